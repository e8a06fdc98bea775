"""Targets (queries) of the Grafana ClickHouse plugin, ``grafana-clickhouse-datasource`` v4.

The Grafana Foundation SDK ships no ClickHouse query type, so this module adds one. A
target is what the plugin stores when a query is written in its SQL editor:

>>> query = ClickHouseQuery("SELECT 1 AS value", Format.TABLE)
>>> sorted(query.to_json().items())  # doctest: +NORMALIZE_WHITESPACE
[('datasource', {'type': 'grafana-clickhouse-datasource', 'uid': '${datasource}'}),
 ('editorType', 'sql'), ('format', 1), ('queryType', 'table'),
 ('rawSql', 'SELECT 1 AS value'), ('refId', 'A')]

``format`` is the backend's ``sqlutil.FormatQueryOption`` (0 time series, 1 table, ...);
``queryType`` is the editor's display hint (``timeseries`` or ``table``).
"""

from __future__ import annotations

from enum import IntEnum

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PLUGIN_ID = "grafana-clickhouse-datasource"
DATASOURCE_UID = "journeys-clickhouse"
DATASOURCE_NAME = "ClickHouse (patient journeys)"
# Panels point at the dashboard's datasource variable, whose default is DATASOURCE_UID:
# one dashboard then works against any ClickHouse datasource holding the journeys tables.
DATASOURCE_VARIABLE = "datasource"


class Format(IntEnum):
    """The plugin's result formats (sqlutil.FormatQueryOption)."""

    TIME_SERIES = 0
    TABLE = 1


_QUERY_TYPE = {Format.TIME_SERIES: "timeseries", Format.TABLE: "table"}


def datasource_ref() -> DataSourceRef:
    """The datasource reference used by every panel and query variable."""
    return DataSourceRef(type_val=PLUGIN_ID, uid=f"${{{DATASOURCE_VARIABLE}}}")


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL-editor target of the ClickHouse plugin."""

    def __init__(self, raw_sql: str, fmt: Format = Format.TABLE, ref_id: str = "A") -> None:
        self.raw_sql = raw_sql
        self.format = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        ref = datasource_ref()
        return {
            "datasource": {"type": ref.type_val, "uid": ref.uid},
            "editorType": "sql",
            "format": int(self.format),
            "queryType": _QUERY_TYPE[self.format],
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    """SDK builder wrapper, so a query can be passed to ``Panel.with_target``."""

    def __init__(self, raw_sql: str, fmt: Format = Format.TABLE, ref_id: str = "A") -> None:
        self._query = ClickHouseQuery(raw_sql, fmt, ref_id)

    def build(self) -> ClickHouseQuery:
        return self._query
