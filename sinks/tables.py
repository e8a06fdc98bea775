"""Table schemas read from ClickHouse, and row dicts -> insertable columns.

The column list and types come from ``system.columns`` (so a new migration needs no
code change here). :meth:`TableSchema.to_columns` turns a list of row dicts into
column-ordered lists; rows that cannot be inserted are returned apart with a reason
(they would otherwise fail the whole insert, forever, on every redelivery).

>>> schema = TableSchema.from_columns("t", [("id", "String"), ("at", "DateTime64(3, 'UTC')"),
...                                         ("tags", "Array(String)")])
>>> prepared = schema.to_columns([{"id": "a", "at": 1700000000000}, {"id": "b"}])
>>> prepared.columns, prepared.rejected
([['a'], [1700000000000], [[]]], [(1, "missing column 'at'")])
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.columns import BadValue, Converter, converter_for, default_for, parse_type

# Columns the writer may fill when a row lacks them: the time the row reached us.
NOW_FILLED = frozenset({"written_at", "ingested_at", "received_at"})
# Columns added later, by table, filled for rows that lack them: an events row from a
# worker that predates copy_rank ranks below every ranked copy of its event; a journey
# row is live (only the writer's own tombstones set is_deleted, sinks/placement.py).
ADDED_LATER: dict[str, dict[str, Any]] = {"events": {"copy_rank": 0}, "appointment_journeys": {"is_deleted": 0}}


@dataclass
class Prepared:
    """Insertable columns for the accepted rows, and (row index, reason) of the rejected ones."""

    names: list[str]
    types: list[str]
    columns: list[list[Any]]
    rejected: list[tuple[int, str]] = field(default_factory=list)
    unknown_keys: set[str] = field(default_factory=set)
    kept: list[int] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def subset(self, positions: Sequence[int]) -> Prepared:
        """The rows at ``positions`` (indexes into the accepted rows), to insert a part of a batch."""
        if len(positions) == self.row_count:
            return self  # the whole batch (positions are always distinct): no copy
        return Prepared(
            names=self.names,
            types=self.types,
            columns=[[column[i] for i in positions] for column in self.columns],
            kept=[self.kept[i] for i in positions],
        )


@dataclass(frozen=True)
class TableSchema:
    name: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    converters: tuple[Converter, ...]
    defaults: tuple[tuple[bool, Any], ...]

    @classmethod
    def from_columns(cls, name: str, columns: Sequence[tuple[str, str]]) -> TableSchema:
        names = tuple(sys.intern(c) for c, _ in columns)  # interned: faster dict lookups per row
        types = tuple(t for _, t in columns)
        return cls(
            name=name,
            names=names,
            types=types,
            converters=tuple(converter_for(t) for t in types),
            defaults=tuple(default_for(parse_type(t)) for t in types),
        )

    def to_columns(self, rows: Sequence[Mapping[str, Any]], fill: Mapping[str, Any] | None = None) -> Prepared:
        """Column-ordered values for ``rows``; ``fill`` supplies values for columns a row lacks."""
        fill = dict(fill or {})
        now_ms = int(time.time() * 1000)
        for name in NOW_FILLED.intersection(self.names):
            fill.setdefault(name, now_ms)
        added = {name: value for name, value in ADDED_LATER.get(self.name, {}).items() if name in self.names}
        for name, value in added.items():
            fill.setdefault(name, value)
        rejected: dict[int, str] = {}
        known = frozenset(self.names)
        sent = known - added.keys()
        if rows and (all(row.keys() == known for row in rows) or all(row.keys() == sent for row in rows)):
            # The contract's case: every row has exactly the table's columns (or all of
            # them but the added ones), so plain indexing (no defaults, no missing-value
            # checks) is enough.
            raw: list[list[Any]] = [
                [row[name] for row in rows] if name in rows[0] else [fill[name]] * len(rows) for name in self.names
            ]
            unknown: set[str] = set()
        else:
            raw = []
            missing = object()
            for name, (has_default, default) in zip(self.names, self.defaults, strict=True):
                fallback = fill.get(name, default) if name in fill or has_default else missing
                values = [row.get(name, fallback) for row in rows]
                if fallback is missing:
                    for index, value in enumerate(values):
                        if value is missing:
                            rejected.setdefault(index, f"missing column {name!r}")
                raw.append(values)
            unknown = {key for row in rows for key in row if key not in known}
        kept, columns = self._convert(raw, rejected)
        return Prepared(
            names=list(self.names),
            types=list(self.types),
            columns=columns,
            rejected=sorted(rejected.items()),
            unknown_keys=unknown,
            kept=kept,
        )

    def _convert(self, raw: list[list[Any]], rejected: dict[int, str]) -> tuple[list[int], list[list[Any]]]:
        """Convert every column, leaving out rejected rows; returns (kept row indexes, columns).

        A bad value rejects its row. When a column fails, its values are checked one by
        one to find every bad row at once, and conversion starts over without them: at
        most one restart per column, and none for well-formed batches.
        """
        count = len(raw[0]) if raw else 0
        while True:
            kept = [i for i in range(count) if i not in rejected]
            columns: list[list[Any]] = []
            for name, converter, values in zip(self.names, self.converters, raw, strict=True):
                subset = [values[i] for i in kept] if rejected else values
                try:
                    columns.append(converter(subset))
                except BadValue:
                    for position, value in enumerate(subset):
                        try:
                            converter([value])
                        except BadValue as error:
                            rejected[kept[position]] = f"column {name!r}: {str(error).partition(': ')[2]}"
                    break
            else:
                return kept, columns


def load_schemas(client: Client, database: str) -> dict[str, TableSchema]:
    """Every table of ``database`` with its insertable columns (MATERIALIZED/ALIAS left out)."""
    result = client.query(
        "SELECT table, name, type FROM system.columns"
        " WHERE database = {db:String} AND default_kind NOT IN ('MATERIALIZED', 'ALIAS', 'EPHEMERAL')"
        " ORDER BY table, position",
        parameters={"db": database},
    )
    grouped: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_text in result.result_rows:
        grouped.setdefault(table, []).append((name, type_text))
    return {table: TableSchema.from_columns(table, columns) for table, columns in grouped.items()}
