"""Write row bundles into ClickHouse: one columnar insert per table per batch.

A *bundle* is what one message of the output topic carries: table name -> list of
row objects whose keys are the table's column names (the contract is spelled out in
:mod:`sinks.writer`). :class:`RowWriter` knows nothing of Kafka, so
tests, backfills and dashboards can load rows with it directly:

>>> import tempfile
>>> from sinks.client import connect
>>> from sinks.migrate import migrate
>>> from runtime.logs import configure_logging
>>> configure_logging("console", "CRITICAL")
>>> client = connect(f"chdb://{tempfile.mkdtemp()}/ch")
>>> _ = migrate(client, "demo")
>>> writer = RowWriter(client, "demo")
>>> writer.write([{"deadletters": [{"topic": "journey.checkin", "partition": 0, "offset": 7,
...                                "reason": "bad_json", "detail": "value"}],
...                "friction_events": [{"appointment_id": "A-1"}]}])
{'deadletters': 1}
>>> client.query("SELECT table, reason, row FROM demo.rejected_rows FINAL").result_rows
[('friction_events', "missing column 'rule'", '{"appointment_id":"A-1"}')]
>>> client.close()

Rows that cannot be written never fail the batch and are never dropped: a value the
conversion refuses (:mod:`sinks.tables`), a row the engine refuses (found by splitting
the table's insert, :func:`sinks.faults.isolate`), a row for an unknown table, a
message that is not a bundle all go to ``rejected_rows`` with the reason and the
Kafka message they came in (keyed on it: a redelivered batch records them once). A
transient error (ClickHouse down, :func:`sinks.faults.classify`) is raised: the
caller retries the whole batch, which is idempotent.

Order within a batch: where the batch's keys of the month-partitioned tables are now is
read from ``row_placements`` and the rows settled (:mod:`sinks.placement`: a key that
moves month leaves a tombstone behind), then the data tables are written, then
``row_placements`` records them, then the ``site_hourly`` buckets touched by
``appointment_journeys`` rows (where they are and where they were) are recomputed (a bucket the engine refuses to compute
is skipped and logged), then the rejected rows, then ``pipeline_markers`` rows last, so
that a marker is only visible once everything sent before it (and the aggregates
derived from it) is in ClickHouse or in ``rejected_rows``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from clickhouse_connect.driver.client import Client

from runtime.logs import get_logger
from sinks import placement, site_hourly
from sinks.faults import describe, isolate, summary
from sinks.migrate import MigrationError, quote_database
from sinks.tables import Prepared, TableSchema, load_schemas

MARKERS_TABLE = "pipeline_markers"
JOURNEYS_TABLE = "appointment_journeys"
REJECTED_TABLE = "rejected_rows"
# Tables partitioned by a time a key can change: each key kept live in one partition.
PLACED = placement.placed_tables()
# Tables the writer (or a materialized view, migration 0006) maintains itself: rows for
# them from outside are refused.
DERIVED_TABLES = frozenset({"site_hourly", "schema_migrations", REJECTED_TABLE, placement.PLACEMENTS_TABLE,
                            "journey_dimensions", "connection_issues"})
# Values for columns a row may lack. The Kafka writer sets output_partition from the
# message; rows written offline (no Kafka) count as partition 0.
FILL = {MARKERS_TABLE: {"output_partition": 0}}
ROW_LIMIT = 64 * 1024  # bytes of a rejected row's JSON kept in rejected_rows.row
NOT_A_BUNDLE = "?"  # rejected_rows.table of a message that is not a JSON object

Bundle = Mapping[str, Sequence[Mapping[str, Any]]]

log = get_logger("sinks.rows")


class Origin(NamedTuple):
    """The Kafka message a bundle came in; ``("", 0, i)`` for the i-th bundle of a write without Kafka."""

    topic: str
    partition: int
    offset: int


@dataclass
class WriteFaults:
    """What one :meth:`RowWriter.write` set aside: the writer's counters are made of these."""

    rejected: Counter[str] = field(default_factory=Counter)  # rows put in rejected_rows, by table
    refused_inserts: Counter[str] = field(default_factory=Counter)  # inserts refused for their data, by table
    skipped_buckets: int = 0  # site_hourly buckets the engine refused to recompute


@dataclass
class _Rows:
    """One table's rows of a batch, each with the message and position it came from."""

    rows: list[Mapping[str, Any]] = field(default_factory=list)
    sources: list[tuple[Origin, int]] = field(default_factory=list)


@dataclass(frozen=True)
class _Rejected:
    table: str
    row: object
    origin: Origin
    index: int
    reason: str  # the whole error, stored
    logged: str  # value-free, for logs and counters


class RowWriter:
    """Insert bundles of rows into ``database`` (tables must exist: run migrations first).

    Rows that cannot be inserted go to ``rejected_rows`` (see the module doc) and are
    counted in :attr:`rejected` by (table, reason) and in :attr:`last_faults`.
    """

    def __init__(self, client: Client, database: str, *, recompute_site_hourly: bool = True) -> None:
        self.client = client
        self.database = quote_database(database)
        self.recompute_site_hourly = recompute_site_hourly
        self.rejected: Counter[tuple[str, str]] = Counter()  # since creation, by (table, reason)
        self.last_faults = WriteFaults()  # of the last write()
        self._schemas: dict[str, TableSchema] = {}
        self._warned_keys: set[tuple[str, str]] = set()
        self._aside: list[_Rejected] = []  # rejected in this write, not yet in rejected_rows

    # -- public ------------------------------------------------------------------------

    def write(self, bundles: Sequence[Bundle | bytes | None], origins: Sequence[Origin] | None = None) -> dict[str, int]:
        """Insert all rows of ``bundles``; returns rows written per table.

        ``origins[i]`` is the Kafka message ``bundles[i]`` came in (the key of its
        rejected rows). A bundle that is not a mapping (e.g. the bytes of a message
        that is not JSON) is rejected whole. ``site_hourly`` in the result counts the
        buckets recomputed. Safe to call again with the same bundles: every table is a
        ReplacingMergeTree keyed on the row's identity, so a redelivered batch replaces
        itself (read with FINAL).
        """
        self.last_faults, self._aside = WriteFaults(), []
        if origins is None:
            origins = [Origin("", 0, i) for i in range(len(bundles))]
        grouped = self._group(bundles, origins)
        markers = grouped.pop(MARKERS_TABLE, None)
        # Convert everything before the first insert: a conversion problem never leaves
        # half a batch written.
        converted = {table: (self._prepare(table, group), group) for table, group in grouped.items()}
        prepared = {table: (p, group) for table, (p, group) in converted.items() if p is not None and p.row_count}
        counts: dict[str, int] = {}

        # Where each key's newest row is now, read before anything goes in: it places
        # tombstones (sinks.placement) and names the buckets appointments leave.
        placed = [table for table in prepared if table in PLACED]
        stored = placement.stored_placements(self.client, self.database, {
            table: _column(prepared[table][0], PLACED[table].key[0]) for table in placed}) if placed else {}
        touched: set[site_hourly.Bucket] = set()
        journeys = prepared.get(JOURNEYS_TABLE)
        if journeys is not None and self.recompute_site_hourly:
            rows = journeys[0]
            touched = site_hourly.buckets_of_rows(
                _column(rows, "site_id"), _column(rows, "department"), _column(rows, "scheduled_start"))
            left = (site_hourly.bucket_of(p.extra["site_id"], p.extra["department"], p.times["scheduled_start"])
                    for p in stored[JOURNEYS_TABLE].values() if not p.deleted)
            touched.update(bucket for bucket in left if bucket is not None)
        own: dict[str, int] = {}  # of a placed table's rows, how many are the batch's (move tombstones follow)
        given: dict[str, int] = {}
        for table in placed:
            rows, group = prepared[table]
            given[table] = rows.row_count
            settled, own[table] = self._settle(table, rows, group, stored[table])
            prepared[table] = (settled, group)

        recorded: list[list[list[Any]]] = []
        for table, (rows, group) in prepared.items():
            refused = self._insert_isolating(table, rows, group)
            # Counted as the batch's rows: superseded ones are written (replaced anyway), tombstones not.
            counts[table] = given.get(table, rows.row_count) - len(refused)
            if table in own:
                inserted = [i for i in range(own[table]) if i not in refused]
                recorded.append(placement.placement_columns(
                    PLACED[table], dict(zip(rows.names, rows.columns, strict=True)), inserted))
        if recorded:
            # After the rows: a crash in between redelivers the batch, which settles the same way again.
            self._insert_placements([sum((part[i] for part in recorded), []) for i in range(len(recorded[0]))])
        if touched:
            counts["site_hourly"] = self._recompute(touched)

        marker_rows = self._prepare(MARKERS_TABLE, markers) if markers else None
        self._flush_rejected()  # before any marker: what came before it is written or set aside
        if markers is not None and marker_rows is not None and marker_rows.row_count:
            refused = self._insert_isolating(MARKERS_TABLE, marker_rows, markers, one_at_a_time=True)
            counts[MARKERS_TABLE] = marker_rows.row_count - len(refused)
        return counts

    # -- steps -------------------------------------------------------------------------

    def _group(self, bundles: Iterable[Bundle | bytes | None], origins: Sequence[Origin]) -> dict[str, _Rows]:
        grouped: dict[str, _Rows] = {}
        for bundle, origin in zip(bundles, origins, strict=True):
            if not isinstance(bundle, Mapping):
                self._set_aside(NOT_A_BUNDLE, bundle, origin, 0, "message is not a JSON object of table -> rows")
                continue
            for table, rows in bundle.items():
                if not isinstance(rows, list):
                    self._set_aside(str(table), rows, origin, 0, "rows are not a list")
                    continue
                group = grouped.setdefault(str(table), _Rows())
                for index, row in enumerate(rows):
                    if isinstance(row, Mapping):
                        group.rows.append(row)
                        group.sources.append((origin, index))
                    else:
                        self._set_aside(str(table), row, origin, index, "row is not an object")
        return grouped

    def _prepare(self, table: str, group: _Rows) -> Prepared | None:
        schema = self._schema(table)
        if schema is None:
            reason = "unknown table" if table not in DERIVED_TABLES else "table is written by the sink"
            for row, (origin, index) in zip(group.rows, group.sources, strict=True):
                self._set_aside(table, row, origin, index, reason)
            return None
        try:
            prepared = schema.to_columns(group.rows, FILL.get(table))
        except Exception as error:
            # A bug of ours in the conversion: set the table's rows aside rather than stall on them.
            log.exception("conversion_failed", table=table, rows=len(group.rows))
            for row, (origin, index) in zip(group.rows, group.sources, strict=True):
                self._set_aside(table, row, origin, index, describe(error), summary(error))
            return None
        for position, reason in prepared.rejected:
            self._set_aside(table, group.rows[position], *group.sources[position], reason)
        for key in sorted(prepared.unknown_keys):
            if (table, key) not in self._warned_keys:  # once per process: a worker ahead of the schema
                self._warned_keys.add((table, key))
                log.warning("unknown_column_ignored", table=table, column=key)
        return prepared

    def _settle(
        self, table: str, prepared: Prepared, group: _Rows, stored: Mapping[placement.Key, placement.Placement]
    ) -> tuple[Prepared, int]:
        """``prepared`` as :func:`sinks.placement.settle` says: superseded and stale rows
        out, core tombstones in the partition of what they delete, move tombstones added
        at the end (as rows of ``group`` from the message of the row that moved); and how
        many rows come before those tombstones."""
        spec = PLACED[table]
        wanted = [*spec.key, spec.version, "is_deleted", *spec.partition_by,
                  *(name for name in placement.CONTEXT if name in prepared.names)]
        picked = [prepared.columns[prepared.names.index(name)] for name in wanted]
        rows = [dict(zip(wanted, values, strict=True)) for values in zip(*picked, strict=True)]
        settled = placement.settle(spec, rows, stored)
        if not settled.moved and not settled.tombstones and len(settled.keep) == prepared.row_count:
            return prepared, prepared.row_count  # the common case: nothing moved
        kept = prepared.subset(settled.keep)
        columns = [list(column) for column in kept.columns]
        for position_in_kept, position in enumerate(settled.keep):
            for name, value in settled.moved.get(position, {}).items():
                columns[prepared.names.index(name)][position_in_kept] = value
        indexes = list(kept.kept)
        if settled.tombstones:
            schema = self._table_schema(table)
            assert schema is not None  # its rows were just prepared with it
            extra = schema.to_columns([t.row for t in settled.tombstones])
            for column, values in zip(columns, extra.columns, strict=True):
                column.extend(values)
            for t in settled.tombstones:
                group.rows.append(t.row)
                group.sources.append(group.sources[prepared.kept[t.cause]])
                indexes.append(len(group.rows) - 1)
        return Prepared(names=prepared.names, types=prepared.types, columns=columns, kept=indexes), len(settled.keep)

    def _insert_placements(self, columns: list[list[Any]]) -> None:
        """Insert ``row_placements`` columns the writer made itself (converted by construction)."""
        schema = self._table_schema(placement.PLACEMENTS_TABLE)
        if schema is None:
            raise MigrationError(f"{self.database}.{placement.PLACEMENTS_TABLE} is missing: run `journeys db migrate`")
        types = dict(zip(schema.names, schema.types, strict=True))
        names = list(placement.PLACEMENT_COLUMNS)
        self._insert(placement.PLACEMENTS_TABLE, Prepared(names=names, types=[types[n] for n in names], columns=columns))

    def _insert_isolating(
        self, table: str, prepared: Prepared, group: _Rows, *, one_at_a_time: bool = False
    ) -> set[int]:
        """Insert ``prepared``; rows the engine refuses go aside, the others in. Returns the
        positions refused.

        ``one_at_a_time``: each refused row reaches ``rejected_rows`` before any row
        after it is inserted (markers: see the module doc).
        """

        def refused_row(position: int, error: BaseException) -> None:
            source = group.sources[prepared.kept[position]]
            self._set_aside(table, group.rows[prepared.kept[position]], *source, describe(error), summary(error))
            if one_at_a_time:
                self._flush_rejected()

        refused = isolate(
            list(range(prepared.row_count)),
            lambda positions: self._insert(table, prepared.subset(positions)),
            refused_row,
        )
        if refused:
            self.last_faults.refused_inserts[table] += 1
        return {position for position, _ in refused}

    def _recompute(self, buckets: set[site_hourly.Bucket]) -> int:
        """Recompute ``buckets``; one the engine refuses (e.g. an hour before 1970, which
        ``site_hourly.hour`` cannot hold) is skipped and logged, never retried forever."""
        refused = isolate(sorted(buckets), lambda part: site_hourly.recompute(self.client, part, self.database))
        for bucket, error in refused:
            log.error(
                "site_hourly_bucket_skipped",
                site_id=bucket.site_id,
                department=bucket.department,
                hour=bucket.hour,
                error=summary(error),
            )
        if refused:
            self.last_faults.refused_inserts["site_hourly"] += 1
            self.last_faults.skipped_buckets += len(refused)
        return len(buckets) - len(refused)

    def _schema(self, table: str) -> TableSchema | None:
        if table in DERIVED_TABLES:
            return None
        return self._table_schema(table)

    def _table_schema(self, table: str) -> TableSchema | None:
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

    # -- rejected rows -----------------------------------------------------------------

    def _set_aside(
        self, table: str, row: object, origin: Origin, index: int, reason: str, logged: str | None = None
    ) -> None:
        # Conversion reasons never quote values (sinks.columns), engine errors may: those
        # are logged by their code only, and stored whole.
        self._aside.append(_Rejected(table, row, origin, index, reason, logged or reason))

    def _flush_rejected(self) -> None:
        if not self._aside:
            return
        schema = self._table_schema(REJECTED_TABLE)
        if schema is None:
            raise MigrationError(f"{self.database}.{REJECTED_TABLE} is missing: run `journeys db migrate`")
        rows = []
        for rejected in self._aside:
            text, truncated, size = _row_json(rejected.row)
            rows.append(
                {
                    "table": rejected.table,
                    "reason": rejected.reason,
                    "row": text,
                    "row_truncated": int(truncated),
                    "row_bytes": size,
                    "output_topic": rejected.origin.topic,
                    "output_partition": rejected.origin.partition,
                    "output_offset": rejected.origin.offset,
                    "row_index": rejected.index,
                }
            )
        self._insert(REJECTED_TABLE, schema.to_columns(rows, {"rejected_at": _now_ms()}))
        by_reason = Counter((rejected.table, rejected.logged) for rejected in self._aside)
        for (table, reason), count in sorted(by_reason.items()):
            self.rejected[(table, reason)] += count
            self.last_faults.rejected[table] += count
            log.error("rows_rejected", table=table, reason=reason, rows=count, into=REJECTED_TABLE)
        self._aside = []


def _column(prepared: Prepared, name: str) -> list[Any]:
    return prepared.columns[prepared.names.index(name)]


def _row_json(row: object) -> tuple[str, bool, int]:
    """(text, truncated, full size in bytes) of a rejected row: its JSON, or the message bytes as they came.

    The standard library, not orjson: a rejected row may hold what orjson refuses
    (an integer beyond 64 bits), and this path is rare.
    """
    if isinstance(row, bytes):
        raw = row
    else:
        raw = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=repr).encode()
    if len(raw) <= ROW_LIMIT:
        return raw.decode(errors="replace"), False, len(raw)
    return raw[:ROW_LIMIT].decode(errors="ignore"), True, len(raw)  # "ignore": a character cut in two


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
