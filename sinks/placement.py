"""Keep every key of a month-partitioned table live in one partition only.

The journey tables are partitioned by month of a row time (``schemas.tables.Table.partition_by``,
migration 0005), and readers may merge FINAL per partition
(``do_not_merge_across_partitions_select_final = 1``). A ReplacingMergeTree only replaces
rows of one partition, so a key whose time moves to another month (a reschedule, a late
fact that moves a start) would leave its old version live in the old partition. Before a
batch is inserted, :func:`settle` therefore compares each row with where its key's newest
row is now (:func:`stored_placements`, read from ClickHouse) and

- a live row in another month than the key's live row: a tombstone (``is_deleted = 1``)
  goes into the old partition, at the version of the row it deletes (equal versions: the
  row inserted last wins, the tombstone; a reader that merges across partitions still
  sees the new row, whose version is larger);
- a tombstone from the journey core (it carries empty times): it is moved to the
  partition of the live row it deletes; one with nothing live to delete is dropped;
- a row older than the key's newest that would land in another partition (a batch
  redelivered after a newer one) is dropped: it could never be replaced there.

Of the rows of one key in one batch (several versions of a journey) only the newest is kept.

>>> from schemas.tables import TABLES
>>> stored = {("a1",): Placement(version=3, deleted=False, month=202601,
...                              times={"scheduled_start": 1769853600000, "first_event_at": 1767225600000})}
>>> moved = {"appointment_id": "a1", "version": 4, "is_deleted": 0,
...          "scheduled_start": 1769940000000, "first_event_at": 1767225600000}   # 31 Jan -> 1 Feb
>>> result = settle(TABLES["appointment_journeys"], [moved], stored)
>>> result.keep, [(t.cause, t.row["version"], t.row["is_deleted"], t.row["scheduled_start"]) for t in result.tombstones]
([0], [(0, 3, 1, 1769853600000)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.tables import TABLES, Table, tombstone
from schemas.timestamps import DAY_MS
from sinks.migrate import quote_database

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 5_000  # ids per lookup statement: keeps parameters well under HTTP limits
PLACEMENTS_TABLE = "row_placements"
# Columns a move tombstone takes from the row that moved, like the core's tombstones: a
# reader without FINAL (the dashboards' variables list DISTINCT sites, departments and
# providers) then sees no empty site.
CONTEXT = ("site_id", "department", "provider_id", "modality")
_SEPARATOR, _SEPARATOR_SQL = "\x1f", "\\x1F"  # unit separator, in Python and in ClickHouse SQL

Key = tuple[Any, ...]


def placed_tables() -> dict[str, Table]:
    """The tables whose keys the writer keeps in one partition: partitioned by a time a
    key can change, with ``is_deleted`` for the tombstone (``events`` is partitioned by
    ``occurred_at`` too, but an event's time only differs between two copies of it)."""
    return {
        name: table
        for name, table in TABLES.items()
        if table.partition_by and table.deletable and not set(table.partition_by) <= set(table.key)
    }


def month_of(epoch_ms: int) -> int:
    """``toYYYYMM`` of a ``DateTime64(3, 'UTC')`` given in epoch milliseconds.

    >>> month_of(1769903999999), month_of(1769904000000), month_of(-1)
    (202601, 202602, 196912)
    """
    return _month_of_day(epoch_ms // DAY_MS)


@lru_cache(maxsize=4096)
def _month_of_day(day: int) -> int:
    # Per day, cached: a batch's rows fall on few days, and datetime arithmetic per row
    # is a good share of the writer's time.
    moment = _EPOCH + timedelta(days=day)
    return moment.year * 100 + moment.month


def row_month(table: Table, times: Mapping[str, Any]) -> int | None:
    """The month partition of a row with these time values (None: no time to place it by)."""
    for column in table.partition_by:
        value = times[column]
        if value is not None:
            return _month_of_day(value // DAY_MS)
    return None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a key's newest row is: its version, whether it is a tombstone, its month,
    and its partition columns' values (a tombstone beside it carries the same)."""

    version: int
    deleted: bool
    month: int | None
    times: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)  # site_id, department: the site_hourly bucket


def stored_placements(
    client: Client, database: str, lookups: Mapping[str, Iterable[str]]
) -> dict[str, dict[Key, Placement]]:
    """Where the newest stored row of each key is, per table: ``lookups`` maps a table to
    the values of its first key column in the batch.

    Read from ``row_placements`` (one narrow row per key, sorted by that first column
    and not partitioned, so only the granules of these ids are read however long the
    history; the tables themselves would be read in every month partition).
    """
    db = quote_database(database)
    ids = sorted({value for values in lookups.values() for value in values})
    found: dict[str, dict[Key, Placement]] = {table: {} for table in lookups}
    # The ids go as one string split in SQL: binding an array of 20,000 strings costs the
    # client as much as the query. An id holding the separator sends the array instead.
    split = not any(_SEPARATOR in value for value in ids)
    listed = f"splitByChar('{_SEPARATOR_SQL}', {{ids:String}})" if split else "{ids:Array(String)}"
    sql = (f"SELECT table, lookup, key, version, is_deleted, toUnixTimestamp64Milli(placed_at),"
           f" toUnixTimestamp64Milli(placed_at_else), site_id, department FROM {db}.{PLACEMENTS_TABLE} FINAL"
           f" WHERE lookup IN (SELECT arrayJoin({listed})) AND table IN {{tables:Array(String)}}")
    specs = {name: TABLES[name] for name in lookups}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        parameters = {"ids": _SEPARATOR.join(chunk) if split else chunk, "tables": sorted(lookups)}
        for name, lookup, rest, version, deleted, placed_at, placed_at_else, site_id, department in client.query(
            sql, parameters=parameters
        ).result_rows:
            table = specs[name]
            times = {table.partition_by[0]: placed_at}
            if len(table.partition_by) > 1:
                times[table.partition_by[1]] = placed_at_else
            found[name][(lookup, *rest)] = Placement(
                int(version), bool(deleted), row_month(table, times), times, {"site_id": site_id, "department": department})
    return found


PLACEMENT_COLUMNS = ("lookup", "table", "key", "version", "is_deleted", "placed_at", "placed_at_else", "site_id",
                     "department")


def placement_columns(
    table: Table, columns: Mapping[str, Sequence[Any]], positions: Sequence[int]
) -> list[list[Any]]:
    """``row_placements`` columns (in :data:`PLACEMENT_COLUMNS` order) recording the rows at
    ``positions`` of ``columns`` (converted, inserted into ``table``) as their keys' newest.
    Columnar: the values are already converted, and a batch records tens of thousands."""
    def at(column: str) -> list[Any]:
        values = columns[column]
        return [values[i] for i in positions]

    rest = [at(column) for column in table.key[1:]]
    second = table.partition_by[1] if len(table.partition_by) > 1 else None
    return [
        at(table.key[0]),
        [table.name] * len(positions),
        [list(key) for key in zip(*rest, strict=True)] if rest else [[] for _ in positions],
        at(table.version),
        at("is_deleted"),
        at(table.partition_by[0]),
        at(second) if second else [None] * len(positions),
        at("site_id"),
        at("department"),
    ]


@dataclass(frozen=True)
class Tombstone:
    """A tombstone to insert, and the position of the row that caused it (its origin)."""

    cause: int
    row: dict[str, Any]


@dataclass
class Settled:
    """What to insert of a table's rows: the positions kept (in their order), core
    tombstones moved to the partition of what they delete (position -> partition
    columns' values), and the tombstones to add."""

    keep: list[int] = field(default_factory=list)
    moved: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    tombstones: list[Tombstone] = field(default_factory=list)


def settle(table: Table, rows: Sequence[Mapping[str, Any]], stored: Mapping[Key, Placement]) -> Settled:
    """Decide, row by row, what keeps each key live in one partition (see the module doc).

    ``rows`` are converted rows (times in epoch ms); ``stored`` comes from :func:`stored_placements`.
    Of several rows of one key only the newest is kept: the others are replaced anyway,
    and a tombstone of equal version in the same insert would have no defined winner.
    """
    version_column = table.version
    newest: dict[Key, int] = {}
    for position, row in enumerate(rows):
        key = tuple(row[column] for column in table.key)
        known = newest.get(key)
        if known is None or (row[version_column], row["is_deleted"]) >= (
            rows[known][version_column], rows[known]["is_deleted"]
        ):
            newest[key] = position
    result = Settled()
    for key, position in newest.items():
        row = rows[position]
        version, deleted = int(row[version_column]), bool(row["is_deleted"])
        now = stored.get(key)
        if deleted:
            if now is None or now.deleted:
                continue  # nothing live to delete
            result.moved[position] = now.times
        else:
            month = row_month(table, row)
            if now is not None and month != now.month:
                if version < now.version:
                    continue  # older than what is stored, and elsewhere: it would stay live there
                if not now.deleted:
                    identity = {column: row[column] for column in (*table.key, *CONTEXT) if column in row}
                    result.tombstones.append(
                        Tombstone(position, tombstone(table.name, now.version, **identity, **now.times)))
        result.keep.append(position)
    result.keep.sort()
    return result
