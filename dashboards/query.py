"""Run a dashboard panel's SQL outside Grafana, exactly as Grafana would send it.

Used by the HTML report and the tests: the panel's ``rawSql`` from the generated JSON,
the interval Grafana would pick for it, the variables' options from their own queries,
and the plugin's macro expansion (:mod:`dashboards.macros`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboards.macros import (
    ALL,
    Selection,
    TimeRange,
    expand,
    grafana_interval,
    parse_duration,
)

# Roughly the pixel width of a full-width panel: Grafana's maxDataPoints default.
MAX_DATA_POINTS = 1200
# What the Grafana user's ClickHouse profile sets for every panel (deploy/kubernetes/base/
# clickhouse.yaml, profile `readonly`, which forbids a query's own SETTINGS): FINAL merges,
# and so prunes, per month partition. Right because the writer keeps each key live in one
# partition (sinks.placement); the report sends the same so it measures what Grafana gets.
PANEL_SETTINGS: dict[str, Any] = {"do_not_merge_across_partitions_select_final": 1}


@dataclass(frozen=True)
class PanelResult:
    """One panel's rows, or the error ClickHouse returned."""

    panel: dict[str, Any]
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    error: str | None = None


def panel_interval(panel: dict[str, Any], time_range: TimeRange) -> timedelta:
    """``$__interval`` for the panel: range / data points, floored at the panel's min interval."""
    width = panel.get("gridPos", {}).get("w", 24)
    minimum = parse_duration(panel["interval"]) if panel.get("interval") else None
    return grafana_interval(time_range, max(int(MAX_DATA_POINTS * width / 24), 100), minimum)


def panel_sql(panel: dict[str, Any], time_range: TimeRange, selections: Sequence[Selection]) -> str:
    """The SQL ClickHouse receives for this panel."""
    return expand(panel["targets"][0]["rawSql"], time_range, panel_interval(panel, time_range), selections)


@contextmanager
def default_database(client: Any, database: str) -> Iterator[Any]:
    """Panels name tables without a database (the datasource's defaultDatabase): lend the
    client that default for the block, then restore it."""
    previous = client.database
    client.database = database
    try:
        yield client
    finally:
        client.database = previous


def variable_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """The SQL of the dashboard's query variables, in dashboard order (name -> SQL)."""
    queries = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query", "")
            queries[variable["name"]] = query if isinstance(query, str) else str(query.get("rawSql", ""))
    return queries


def all_selections(client: Any, time_range: TimeRange, dashboard: dict[str, Any]) -> list[Selection]:
    """Every query variable of ``dashboard`` at "All", with its options from its own
    query (in dashboard order, so a chained variable sees the ones before it)."""
    selections: list[Selection] = []
    for name, query in variable_queries(dashboard).items():
        rows = client.query(expand(query, time_range, timedelta(minutes=1), selections)).result_rows
        selections.append(Selection(name, ALL, tuple(str(row[0]) for row in rows)))
    return selections


def run_panel(
    client: Any, panel: dict[str, Any], time_range: TimeRange, selections: Sequence[Selection]
) -> PanelResult:
    """Run one panel; a ClickHouse error becomes ``PanelResult.error``."""
    try:
        result = client.query(panel_sql(panel, time_range, selections), settings=PANEL_SETTINGS)
    except Exception as error:  # the report shows it in the panel, like Grafana does
        return PanelResult(panel, [], [], [], error=str(error).strip().splitlines()[0][:400])
    return PanelResult(
        panel,
        list(result.column_names),
        [t.name for t in result.column_types],
        [tuple(row) for row in result.result_rows],
    )


def data_time_range(client: Any, database: str) -> tuple[datetime, datetime]:
    """From the first scheduled start to the latest event: the whole data set."""
    start, end = client.query(
        f"SELECT min(scheduled_start), max(last_event_at) FROM {database}.appointment_journeys FINAL"
    ).result_rows[0]
    if start is None or end is None:
        now = datetime.now(UTC)
        return now - timedelta(days=7), now
    return _utc(start), _utc(end)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def relative_time(text: str, now: datetime) -> datetime:
    """A Grafana time picker expression (``now``, ``now-7d``, ``now/d``, ``now-1d/d``) at ``now``.

    >>> now = datetime(2026, 3, 9, 15, 10, tzinfo=UTC)
    >>> print(relative_time("now/d", now), relative_time("now-30d", now), relative_time("now-1d/d", now), sep="; ")
    2026-03-09 00:00:00+00:00; 2026-02-07 15:10:00+00:00; 2026-03-08 00:00:00+00:00
    """
    match = re.fullmatch(r"now(?:-(\d+)([smhdwy]))?(?:/([mhdwy]))?", text.strip())
    if not match:
        raise ValueError(f"not a relative time: {text!r}")
    amount, unit, rounding = match.groups()
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    moment = now - timedelta(seconds=int(amount) * seconds[unit]) if amount else now
    if rounding == "d":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif rounding == "h":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    elif rounding:
        raise ValueError(f"rounding /{rounding} is not supported: {text!r}")
    return moment


def dashboard_range(dashboard: dict[str, Any], now: datetime, earliest: datetime | None = None) -> TimeRange:
    """The dashboard's default time range with "now" at ``now`` (not before ``earliest``)."""
    picker = dashboard.get("time", {})
    start = relative_time(picker.get("from", "now-6h"), now)
    end = relative_time(picker.get("to", "now"), now)
    if earliest is not None:
        start = max(start, earliest)
    return TimeRange(start, end)
