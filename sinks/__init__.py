"""The ClickHouse side of the pipeline: schema, row writing, the Kafka writer, queries.

Imports only ``schemas`` and ``runtime`` (configuration, logs), never the stream code.

- :mod:`sinks.client`: ``connect(dsn, database=None)`` for ``chdb:///path`` or ``http(s)://...``.
- :mod:`sinks.migrate`: ``migrate(client, database)`` applies ``migrations/NNNN_*.sql`` once.
- :mod:`sinks.rows`: ``RowWriter(client, database).write(bundles)``, no Kafka needed; rows
  that cannot be written go to ``rejected_rows``.
- :mod:`sinks.faults`: transient (retry) vs data (set aside) failures, and finding the bad rows.
- :mod:`sinks.site_hourly`: the per-site, per-hour aggregate kept in step with the journeys.
- :mod:`sinks.markers`: how many acknowledgements of an end-of-input marker are in.
- :mod:`sinks.queries`: read-only queries, directly or through a running writer.
- :mod:`sinks.writer`: ``SinkWriter(WriterConfig)``: output topic -> ClickHouse (``journeys writer``).
"""
