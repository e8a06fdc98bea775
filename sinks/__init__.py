"""The ClickHouse side of the pipeline: schema, row writing, the Kafka writer, queries.

- :mod:`sinks.client`: ``connect(dsn, database=None)`` for ``chdb:///path`` or ``http(s)://...``.
- :mod:`sinks.migrate`: ``migrate(client, database)`` applies ``migrations/NNNN_*.sql`` once.
- :mod:`sinks.rows`: ``RowWriter(client, database).write(bundles)``, no Kafka needed.
- :mod:`sinks.site_hourly`: the per-site, per-hour aggregate kept in step with the journeys.
- :mod:`sinks.markers`: ``wait_for_marker(...)``: everything sent before a marker is readable.
- :mod:`sinks.writer`: ``SinkWriter(WriterConfig)``: output topic -> ClickHouse (``journeys writer``).
- :mod:`sinks.commands`: ``journeys writer``, ``journeys db migrate``, ``journeys query``.
- :mod:`sinks.testing`: realistic rows for every table (tests, dashboards without Kafka).
"""
