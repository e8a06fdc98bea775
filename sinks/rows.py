"""Write row bundles into ClickHouse: one columnar insert per table per batch.

A *bundle* is what one message of the output topic carries: table name -> list of
row objects whose keys are the table's column names (the contract is spelled out in
:mod:`sinks.writer`). :class:`RowWriter` knows nothing of Kafka, so
tests, backfills and dashboards can load rows with it directly:

>>> import tempfile
>>> from sinks.client import connect
>>> from sinks.migrate import migrate
>>> from runtime.logs import configure_logging
>>> configure_logging("console", "WARNING")
>>> client = connect(f"chdb://{tempfile.mkdtemp()}/ch")
>>> _ = migrate(client, "demo")
>>> writer = RowWriter(client, "demo")
>>> writer.write([{"deadletters": [{"topic": "journey.checkin", "partition": 0, "offset": 7,
...                                "reason": "bad_json", "detail": "value"}]}])
{'deadletters': 1}
>>> client.close()

Order within a batch: data tables first, then the ``site_hourly`` buckets touched by
``appointment_journeys`` rows are recomputed, then ``pipeline_markers`` rows last, so
that a marker is only visible once everything sent before it (and the aggregates
derived from it) is in ClickHouse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from runtime.logs import get_logger
from sinks import site_hourly
from sinks.migrate import quote_database
from sinks.tables import Prepared, TableSchema, load_schemas

MARKERS_TABLE = "pipeline_markers"
JOURNEYS_TABLE = "appointment_journeys"
# Tables the writer maintains itself: rows for them from outside are refused.
DERIVED_TABLES = frozenset({"site_hourly", "schema_migrations"})
# Values for columns a row may lack. The Kafka writer sets output_partition from the
# message; rows written offline (no Kafka) count as partition 0.
FILL = {MARKERS_TABLE: {"output_partition": 0}}

Bundle = Mapping[str, Sequence[Mapping[str, Any]]]

log = get_logger("sinks.rows")


class RowWriter:
    """Insert bundles of rows into ``database`` (tables must exist: run migrations first).

    Rows that cannot be inserted (unknown table, missing column, wrong type) are left
    out and counted in :attr:`rejected` by (table, reason) rather than failing the
    batch: a poison row would otherwise block its partition forever.
    """

    def __init__(self, client: Client, database: str, *, recompute_site_hourly: bool = True) -> None:
        self.client = client
        self.database = quote_database(database)
        self.recompute_site_hourly = recompute_site_hourly
        self.rejected: Counter[tuple[str, str]] = Counter()  # since creation, by (table, reason)
        self.last_rejected: Counter[str] = Counter()  # in the last write(), by table
        self._schemas: dict[str, TableSchema] = {}
        self._warned_keys: set[tuple[str, str]] = set()

    # -- public ------------------------------------------------------------------------

    def write(self, bundles: Iterable[Bundle]) -> dict[str, int]:
        """Insert all rows of ``bundles``; returns rows written per table.

        ``site_hourly`` in the result counts the buckets recomputed. Safe to call again
        with the same bundles: every table is a ReplacingMergeTree keyed on the row's
        identity, so a redelivered batch replaces itself (read with FINAL).
        """
        self.last_rejected = Counter()
        grouped = self._group(bundles)
        markers = grouped.pop(MARKERS_TABLE, [])
        # Convert everything before the first insert: a conversion problem never leaves
        # half a batch written.
        converted = {table: self._prepare(table, rows) for table, rows in grouped.items()}
        prepared = {table: p for table, p in converted.items() if p is not None and p.row_count}
        counts: dict[str, int] = {}

        touched: set[site_hourly.Bucket] = set()
        journeys = prepared.get(JOURNEYS_TABLE)
        if journeys is not None and self.recompute_site_hourly:
            column = dict(zip(journeys.names, journeys.columns, strict=True))
            touched = site_hourly.current_buckets(self.client, self.database, column["appointment_id"])
            touched |= site_hourly.buckets_of_rows(column["site_id"], column["department"], column["scheduled_start"])

        for table, rows in prepared.items():
            self._insert(table, rows)
            counts[table] = rows.row_count
        if touched:
            counts["site_hourly"] = site_hourly.recompute(self.client, touched, self.database)

        marker_rows = self._prepare(MARKERS_TABLE, markers) if markers else None
        if marker_rows is not None and marker_rows.row_count:
            self._insert(MARKERS_TABLE, marker_rows)
            counts[MARKERS_TABLE] = marker_rows.row_count
        return counts

    # -- steps -------------------------------------------------------------------------

    def _group(self, bundles: Iterable[Bundle]) -> dict[str, list[Mapping[str, Any]]]:
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for bundle in bundles:
            if not isinstance(bundle, Mapping):
                self._reject("?", "bundle is not an object", 1)
                continue
            for table, rows in bundle.items():
                if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
                    self._reject(
                        str(table), "rows are not a list of objects", len(rows) if isinstance(rows, list) else 1
                    )
                    continue
                grouped.setdefault(str(table), []).extend(rows)
        return grouped

    def _prepare(self, table: str, rows: list[Mapping[str, Any]]) -> Prepared | None:
        schema = self._schema(table)
        if schema is None:
            self._reject(
                table, "unknown table" if table not in DERIVED_TABLES else "table is written by the sink", len(rows)
            )
            return None
        prepared = schema.to_columns(rows, FILL.get(table))
        for _, reason in prepared.rejected:
            self._reject(table, reason, 1)
        for key in sorted(prepared.unknown_keys):
            if (table, key) not in self._warned_keys:  # once per process: a worker ahead of the schema
                self._warned_keys.add((table, key))
                log.warning("unknown_column_ignored", table=table, column=key)
        return prepared

    def _schema(self, table: str) -> TableSchema | None:
        if table in DERIVED_TABLES:
            return None
        if table not in self._schemas:
            # Unknown so far: the table may have been created since we last looked.
            self._schemas = load_schemas(self.client, self.database)
        return self._schemas.get(table)

    def _insert(self, table: str, prepared: Prepared) -> None:
        self.client.insert(
            table,
            prepared.columns,
            column_names=prepared.names,
            database=self.database,
            column_type_names=prepared.types,  # saves a DESCRIBE round trip per insert
            column_oriented=True,
        )

    def _reject(self, table: str, reason: str, count: int) -> None:
        self.rejected[(table, reason)] += count
        self.last_rejected[table] += count
        log.error("rows_rejected", table=table, reason=reason, rows=count)


def with_output_partition(bundle: Bundle, partition: int) -> dict[str, Any]:
    """The bundle with ``output_partition`` set on its marker rows (from the Kafka message).

    >>> with_output_partition({"pipeline_markers": [{"marker_id": "m"}], "events": []}, 3)
    {'pipeline_markers': [{'marker_id': 'm', 'output_partition': 3}], 'events': []}
    """
    markers = bundle.get(MARKERS_TABLE)
    if not isinstance(markers, list):
        return bundle if isinstance(bundle, dict) else dict(bundle)  # no copy in the common case
    return {
        **bundle,
        MARKERS_TABLE: [{**row, "output_partition": partition} if isinstance(row, Mapping) else row for row in markers],
    }
