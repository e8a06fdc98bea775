"""An offline HTML report of the Grafana dashboards: the same panels, from the same SQL.

Each dashboard becomes a section laid out on Grafana's 24-column grid; every panel
runs its ``rawSql`` from ``dashboards/generated/*.json`` with the plugin's macros
expanded for the report's time range and every variable at "All". Time series and
bars are inline SVG, stats big numbers, tables HTML tables: one self-contained file,
no JavaScript, nothing fetched from the network.

    from sinks.client import connect
    client = connect("chdb:///var/lib/journeys/clickhouse", "journeys")
    render_report(client, "journeys", Path("report.html"), *data_time_range(client, "journeys"))
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from dashboards.generate import load_generated
from dashboards.macros import Selection, TimeRange
from dashboards.query import (
    PanelResult,
    all_selections,
    dashboard_range,
    data_time_range,
    default_database,
    panel_interval,
    run_panel,
)
from dashboards.svg import bar_chart, format_value, line_chart

__all__ = ["data_time_range", "render_report", "render_dashboard"]

PAGE_WIDTH = 1440  # px of the grid, like a 1440 px wide Grafana window
GAP = 8
ROW_UNIT = 30  # Grafana's grid cell height
HEADER = 34  # panel title bar

CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #111217; color: #ccccdc; font: 14px/1.4 Inter, Helvetica, Arial, sans-serif; }
main { width: %(page)dpx; margin: 0 auto; padding: 24px 0 48px; }
header.report { margin-bottom: 24px; }
header.report h1 { font-size: 24px; margin: 0 0 4px; color: #fff; }
.muted { color: #8e8e9e; }
section.dashboard { margin: 0 0 40px; padding: 16px; background: #0b0c0e; border: 1px solid #202226;
                    border-radius: 4px; }
section.dashboard > h2 { margin: 0; font-size: 20px; color: #fff; }
section.dashboard > p { margin: 4px 0 8px; }
.vars { display: flex; gap: 8px; margin: 8px 0 16px; flex-wrap: wrap; }
.vars span { background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; padding: 3px 8px; font-size: 12px; }
.vars b { color: #6e9fff; font-weight: 500; margin-right: 6px; }
.grid { display: grid; grid-template-columns: repeat(24, 1fr); grid-auto-rows: %(row)dpx; gap: %(gap)dpx; }
.row-title { grid-column: 1 / -1; font-size: 16px; font-weight: 500; color: #fff; align-self: end;
             border-bottom: 1px solid #202226; padding-bottom: 2px; }
.panel { background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; overflow: hidden; display: flex;
         flex-direction: column; }
.panel h3 { margin: 0; height: %(header)dpx; padding: 8px 10px 0; font-size: 13px; font-weight: 500; color: #ccccdc;
            white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.panel h3 .info { display: inline-block; width: 14px; height: 14px; margin-left: 6px; border: 1px solid #8e8e9e;
                  border-radius: 50%%; color: #8e8e9e; font: italic 600 10px/12px Georgia, serif; text-align: center;
                  vertical-align: 1px; cursor: help; }
.panel .body { flex: 1; padding: 0 10px 8px; overflow: hidden; }
.stats { display: flex; height: 100%%; gap: 12px; align-items: center; justify-content: space-around; }
.stat { text-align: center; min-width: 0; }
.stat .value { font-size: 34px; font-weight: 500; line-height: 1.1; white-space: nowrap; }
.stat .label { font-size: 12px; color: #8e8e9e; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
table { border-collapse: collapse; width: 100%%; font-size: 12px; }
th { text-align: left; color: #6e9fff; font-weight: 500; border-bottom: 1px solid #2c3235; padding: 4px 6px;
     white-space: nowrap; }
td { border-bottom: 1px solid #202226; padding: 3px 6px; white-space: nowrap; }
th.num { text-align: right; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.more { font-size: 11px; color: #8e8e9e; padding-top: 4px; }
.error { color: #ff7383; font-family: monospace; font-size: 12px; white-space: pre-wrap; }
.empty { color: #8e8e9e; display: flex; align-items: center; justify-content: center; height: 100%%; }
details { margin-top: 12px; font-size: 12px; }
details dt { color: #fff; margin-top: 6px; }
details dd { margin: 0 0 0 12px; color: #8e8e9e; }
""" % {"page": PAGE_WIDTH, "row": ROW_UNIT, "gap": GAP, "header": HEADER}


def _panel_px(w: int, h: int) -> tuple[int, int]:
    unit = (PAGE_WIDTH - 32 - 23 * GAP) / 24  # section padding 16 px each side
    return int(unit * w + GAP * (w - 1)), int(ROW_UNIT * h + GAP * (h - 1))


def _units(panel: dict[str, Any]) -> tuple[str, int | None, dict[str, str]]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    by_name = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override.get("matcher", {}).get("id") == "byName":
            for prop in override.get("properties", []):
                if prop.get("id") == "unit":
                    by_name[override["matcher"]["options"]] = prop["value"]
    return defaults.get("unit", "short"), defaults.get("decimals"), by_name


def _threshold_color(panel: dict[str, Any], value: Any) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    color = "green"
    for step in steps:
        if step.get("value") is None or (isinstance(value, int | float) and value >= step["value"]):
            color = step.get("color", color)
    return {"green": "#73BF69", "yellow": "#FADE2A", "red": "#F2495C", "orange": "#FF9830"}.get(color, color)


def _cell(value: Any, unit: str | None) -> tuple[str, bool]:
    if isinstance(value, datetime):
        return value.strftime("%a %d %b %H:%M:%S"), False
    if isinstance(value, bool) or value is None:
        return ("–" if value is None else str(value)), False
    if isinstance(value, int | float):
        return format_value(value, unit or "short", None if unit or isinstance(value, int) else 1), True
    return str(value), False


def _render_stat(result: PanelResult) -> str:
    unit, decimals, by_name = _units(result.panel)
    row = result.rows[0] if result.rows else ()
    cells = []
    for name, value in zip(result.columns, row):
        color = _threshold_color(result.panel, value)
        text = format_value(value, by_name.get(name, unit), decimals)
        label = f'<div class="label">{escape(name)}</div>' if len(result.columns) > 1 else ""
        cells.append(f'<div class="stat"><div class="value" style="color:{color}">{escape(text)}</div>{label}</div>')
    return f'<div class="stats">{"".join(cells)}</div>'


def _series(result: PanelResult) -> tuple[list[datetime], dict[str, list[Any]]]:
    """Wide series from the rows; a string second column names the series (long format)."""
    if len(result.types) > 2 and "String" in result.types[1]:
        times = sorted({row[0] for row in result.rows})
        index = {moment: i for i, moment in enumerate(times)}
        series: dict[str, list[Any]] = {}
        for row in result.rows:
            for column, value in zip(result.columns[2:], row[2:]):
                name = f"{row[1]} {column}" if len(result.columns) > 3 else str(row[1])
                series.setdefault(name, [None] * len(times))[index[row[0]]] = value
        return [_aware(t) for t in times], series
    times = [_aware(row[0]) for row in result.rows]
    return times, {name: [row[i] for row in result.rows] for i, name in enumerate(result.columns) if i}


def _is_numeric(type_name: str) -> bool:
    return any(type_name.replace("Nullable(", "").startswith(p) for p in ("UInt", "Int", "Float", "Decimal"))


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _render_body(result: PanelResult, time_range: TimeRange, width: int, height: int) -> str:
    panel = result.panel
    if result.error:
        return f'<div class="error">{escape(result.error)}</div>'
    if not result.rows:
        return '<div class="empty">No data</div>'
    kind = panel["type"]
    unit, _, by_name = _units(panel)
    chart_w, chart_h = width - 22, height - HEADER - 10
    if kind == "stat":
        return _render_stat(result)
    if kind == "timeseries":
        times, series = _series(result)
        bars = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("drawStyle") == "bars"
        gap = panel_interval(panel, time_range) * 3
        return line_chart(times, series, start=time_range.start, end=time_range.end, width=chart_w,
                          height=chart_h, unit=unit, bars=bars, gap=gap)
    if kind == "barchart":
        options = panel.get("options", {})
        categories = [str(row[0]) for row in result.rows]
        series = {name: [row[i] for row in result.rows] for i, name in enumerate(result.columns) if i}
        stacking = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("stacking", {})
        return bar_chart(categories, series, width=chart_w, height=chart_h, unit=unit,
                         horizontal=options.get("orientation") == "horizontal",
                         stacked=stacking.get("mode") == "normal")
    if kind == "table":
        fit = max((chart_h - 26) // 22, 1)
        numeric_columns = {i for i, t in enumerate(result.types) if _is_numeric(t)}
        head = "".join(
            f'<th class="{"num" if i in numeric_columns else ""}">{escape(c)}</th>'
            for i, c in enumerate(result.columns)
        )
        body = []
        for row in result.rows[:fit]:
            cells = [_cell(value, by_name.get(name)) for name, value in zip(result.columns, row)]
            body.append("<tr>" + "".join(
                f'<td class="{"num" if numeric else ""}">{escape(text)}</td>' for text, numeric in cells) + "</tr>")
        more = len(result.rows) - fit
        note = f'<div class="more">… {more} more rows in Grafana</div>' if more > 0 else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"
    return f'<div class="error">panel type {escape(kind)} is not rendered in the report</div>'


def _render_panel(result: PanelResult, time_range: TimeRange) -> str:
    panel = result.panel
    grid = panel["gridPos"]
    width, height = _panel_px(grid["w"], grid["h"])
    style = f'grid-column:{grid["x"] + 1}/span {grid["w"]};grid-row:{grid["y"] + 1}/span {grid["h"]}'
    title = escape(panel.get("title", ""))
    info = f'<span class="info" title="{escape(panel.get("description", ""))}">i</span>'
    body = _render_body(result, time_range, width, height)
    return (
        f'<div class="panel" style="{style}" data-title="{title}">'
        f'<h3>{title}{info}</h3><div class="body">{body}</div></div>'
    )


def render_dashboard(
    client: Any, dashboard: dict[str, Any], time_range: TimeRange, selections: Sequence[Selection]
) -> tuple[str, list[PanelResult]]:
    """One dashboard's ``<section>`` and the results of its panels."""
    items: list[str] = []
    results: list[PanelResult] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            grid = panel["gridPos"]
            title = escape(panel.get("title", ""))
            items.append(f'<div class="row-title" style="grid-row:{grid["y"] + 1}">{title}</div>')
            continue
        result = run_panel(client, panel, time_range, selections)
        results.append(result)
        items.append(_render_panel(result, time_range))
    variables = "".join(
        f"<span><b>{escape(v.get('label') or v['name'])}</b>All</span>"
        for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"
    )
    definitions = "".join(
        f"<dt>{escape(r.panel['title'])}</dt><dd>{escape(r.panel.get('description', ''))}</dd>" for r in results
    )
    html = (
        f'<section class="dashboard" id="{escape(dashboard["uid"])}">'
        f"<h2>{escape(dashboard['title'])}</h2>"
        f'<p class="muted">{escape(dashboard.get("description", ""))}</p>'
        f'<div class="vars">{variables}<span><b>Range</b>{escape(_span(time_range))}</span>'
        f'<span><b>Grafana</b>auto-refresh {escape(dashboard.get("refresh", ""))}, '
        f'default range {escape(dashboard.get("time", {}).get("from", ""))} to now</span></div>'
        f'<div class="grid">{"".join(items)}</div>'
        f"<details><summary class=\"muted\">What each panel measures</summary><dl>{definitions}</dl></details>"
        "</section>"
    )
    return html, results


def render_report(
    client: Any,
    database: str,
    out_path: Path,
    time_from: datetime,
    time_to: datetime,
    *,
    only: Sequence[str] | None = None,
    dashboard_ranges: bool = False,
) -> Path:
    """Render every generated dashboard (or those whose uid is in ``only``) from
    ``database`` into one HTML file at ``out_path``.

    All panels use [time_from, time_to]; with ``dashboard_ranges`` each dashboard uses its
    own default range instead (e.g. "today" for operations), with "now" at ``time_to``.
    """
    time_range = TimeRange(_utc(time_from), _utc(time_to))
    dashboards = [d for d in load_generated() if only is None or d["uid"] in only]
    sections = []
    with default_database(client, database):
        for dashboard in dashboards:
            own = dashboard_range(dashboard, time_range.end, time_range.start) if dashboard_ranges else time_range
            html, _ = render_dashboard(client, dashboard, own, all_selections(client, own, dashboard))
            sections.append(html)
    span = _span(time_range)
    links = " · ".join(
        f'<a href="#{escape(d["uid"])}" style="color:#6e9fff">{escape(d["title"])}</a>' for d in dashboards
    )
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Patient journeys — dashboards report</title>"
        f"<style>{CSS}</style></head><body><main>"
        "<header class=\"report\"><h1>Patient journeys</h1>"
        f'<div class="muted">Database <b>{escape(database)}</b> · {escape(span)} · '
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {links}</div></header>"
        f"{''.join(sections)}</main></body></html>\n"
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path


def _span(time_range: TimeRange) -> str:
    return f"{time_range.start:%a %d %b %Y %H:%M} – {time_range.end:%a %d %b %Y %H:%M} UTC"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

