"""An offline HTML report of the Grafana dashboards: the same panels, from the same SQL.

Each dashboard becomes a section laid out on Grafana's 24-column grid; every panel
runs its ``rawSql`` from ``dashboards/generated/*.json`` with the plugin's macros
expanded for the report's time range and every variable at "All". Time series and
bars are inline SVG, stats big numbers, tables HTML tables: one self-contained file,
no JavaScript, nothing fetched from the network.

The page reflows from a 1,280 px laptop window (the narrowest it is drawn for) to a
wide screen, and prints on A4 landscape. Times read in the sites' own time zones
(``time_zones``, the ``JOURNEYS_SITE_TIME_ZONES`` setting): charts in the zone most
sites share, a table row in its own site's zone, the zone named on the page. What a
static page cannot honestly show is said instead of drawn: "No data" for an empty
panel, "Not live" for a panel about "now" when the range ended earlier.

    from sinks.client import connect
    client = connect("chdb:///var/lib/journeys/clickhouse", "journeys")
    render_report(client, "journeys", Path("report.html"), *data_time_range(client, "journeys"),
                  time_zones={"nyc-midtown": "America/New_York"})
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from dashboards.svg import CHAR_PX, bar_chart, color_of, format_value, line_chart

__all__ = ["data_time_range", "render_report", "render_dashboard", "ReportZones"]

REFERENCE_WIDTH = 1280  # px: the narrowest window the layout is drawn for (a laptop)
PAGE_PADDING = 16  # px each side of <main>
SECTION_PADDING = 16  # px each side of a dashboard's section (plus its 1 px border)
# The grid's width in a REFERENCE_WIDTH window: charts are drawn for it and scale up.
GRID_WIDTH = REFERENCE_WIDTH - 2 * PAGE_PADDING - 2 * SECTION_PADDING - 2
MAX_WIDTH = 1920  # px of <main>: beyond it the page stops growing
GAP = 8
ROW_UNIT = 30  # Grafana's grid cell height at GRID_WIDTH
HEADER = 34  # panel title bar
BODY_PADDING = 10  # px left and right of a panel's body
TABLE_ROW = 24  # px of a table row (12 px text at line height 1.4, 3 px padding, border)
# A unit a table names once in its header rather than on every cell: narrower columns.
HEADER_UNITS = {"m": "min", "d": "days"}
# A panel about "now" (its title ends in "now") is live when the range ends this close to
# the moment the report is made; an older range gets "Not live" instead of a stale count.
LIVE_WITHIN = timedelta(minutes=15)

CSS = """
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: #111217; color: #ccccdc; font: 14px/1.4 Inter, Helvetica, Arial, sans-serif; }
main { max-width: %(max)dpx; margin: 0 auto; padding: 24px %(page)dpx 48px; }
a { color: #6e9fff; }
header.report { margin-bottom: 24px; }
header.report h1 { font-size: 24px; margin: 0 0 4px; color: #fff; }
header.report div { margin-top: 4px; }
.muted { color: #8e8e9e; }
section.dashboard { margin: 0 0 40px; padding: %(section)dpx; background: #0b0c0e; border: 1px solid #202226;
                    border-radius: 4px; container-type: inline-size; }
section.dashboard > h2 { margin: 0; font-size: 20px; color: #fff; }
section.dashboard > p { margin: 4px 0 8px; }
.vars { display: flex; gap: 8px; margin: 8px 0 16px; flex-wrap: wrap; }
.vars span { background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; padding: 3px 8px; font-size: 12px; }
.vars b { color: #6e9fff; font-weight: 500; margin-right: 6px; }
/* Columns share the width whatever their content (minmax(0, 1fr)); rows grow with the
   width, so a chart drawn for a 1,280 px window keeps its proportions on a wider one. */
.grid { display: grid; grid-template-columns: repeat(24, minmax(0, 1fr));
        grid-auto-rows: max(%(row)dpx, calc(100cqi * %(row)d / %(grid)d)); gap: %(gap)dpx; }
.row-title { grid-column: 1 / -1; font-size: 16px; font-weight: 500; color: #fff; align-self: end;
             border-bottom: 1px solid #202226; padding-bottom: 2px; }
.panel { background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; overflow: hidden; display: flex;
         flex-direction: column; min-width: 0; container-type: inline-size; }
/* A title keeps to its bar: smaller in a narrow panel (a 3-column stat on a printed page). */
.panel h3 { margin: 0; height: %(header)dpx; flex: none; padding: 8px %(body)dpx 0; font-size: clamp(11px, 8.6cqi, 13px);
            font-weight: 500;
            color: #ccccdc; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.panel h3 .info { display: inline-block; width: 14px; height: 14px; margin-left: 6px; border: 1px solid #8e8e9e;
                  border-radius: 50%%; color: #8e8e9e; font: italic 600 10px/12px Georgia, serif; text-align: center;
                  vertical-align: 1px; cursor: help; }
.panel .body { flex: 1; min-height: 0; padding: 0 %(body)dpx 8px; overflow: hidden; }
.panel .body svg { display: block; }
.stats { display: flex; height: 100%%; gap: 12px; align-items: center; justify-content: space-around; }
.stat { flex: 1 1 0; min-width: 0; text-align: center; container-type: inline-size; }
/* A big number as large as its share of the panel allows: "27.1 min" fits a 3-column stat. */
.stat .value { font-size: min(34px, 19cqi); font-weight: 500; line-height: 1.1; white-space: nowrap; }
.stat .label { font-size: 12px; color: #8e8e9e; }
table { border-collapse: collapse; width: 100%%; font-size: 12px; }
th { text-align: left; color: #6e9fff; font-weight: 500; border-bottom: 1px solid #2c3235; padding: 4px 5px;
     vertical-align: bottom; line-height: 1.2; }
td { border-bottom: 1px solid #202226; padding: 3px 5px; white-space: nowrap; }
th.num { text-align: right; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.more { font-size: 11px; color: #8e8e9e; padding-top: 4px; }
.error { color: #ff7383; font-family: monospace; font-size: 12px; white-space: pre-wrap; }
.empty { color: #8e8e9e; display: flex; align-items: center; justify-content: center; height: 100%%;
         text-align: center; }
details { margin-top: 12px; font-size: 12px; }
details dt { color: #fff; margin-top: 6px; }
details dd { margin: 0 0 0 12px; color: #8e8e9e; }
@page { size: A4 landscape; margin: 8mm; }
@media print {
  main { max-width: none; padding: 0; }
  section.dashboard { break-before: page; margin: 0; }
  header.report + section.dashboard { break-before: auto; }
  .panel, .row-title { break-inside: avoid; }
}
""" % {
    "max": MAX_WIDTH, "page": PAGE_PADDING, "section": SECTION_PADDING, "row": ROW_UNIT, "grid": GRID_WIDTH,
    "gap": GAP, "header": HEADER, "body": BODY_PADDING,
}


@dataclass(frozen=True)
class ReportZones:
    """Where each site's times are read: charts mix sites, so they use the zone of most
    appointments; a table row with a ``Site`` column uses its own site's zone."""

    chart: tzinfo
    sites: Mapping[str, tzinfo]

    @classmethod
    def of(cls, appointments: Mapping[str, int], time_zones: Mapping[str, str]) -> ReportZones:
        """``appointments`` per site_id; ``time_zones`` maps site_id -> IANA zone (a site
        without one reads in UTC).

        >>> zones = ReportZones.of({"chi-loop": 500, "nyc-midtown": 300, "bos-backbay": 300},
        ...                        {"nyc-midtown": "America/New_York", "bos-backbay": "America/New_York",
        ...                         "chi-loop": "America/Chicago"})
        >>> str(zones.chart), str(zones.zone_of("chi-loop")), str(zones.zone_of("elsewhere"))
        ('America/New_York', 'America/Chicago', 'America/New_York')
        """
        zones: dict[str, tzinfo] = {
            site: ZoneInfo(time_zones[site]) if site in time_zones else UTC for site in sorted(appointments)
        }
        counts: Counter[str] = Counter()
        for site, count in appointments.items():
            counts[str(zones[site])] += count
        # The zone of most appointments; on a tie, the zone of the first site in alphabetical order.
        chart = min(zones.items(), key=lambda item: (-counts[str(item[1])], item[0]))[1] if zones else UTC
        return cls(chart, zones)

    def zone_of(self, site: Any) -> tzinfo:
        return self.sites.get(str(site), self.chart)

    def describe(self, moment: datetime) -> str:
        """One sentence naming the zones, for the report's header."""
        chart = _zone_name(self.chart, moment)
        here = [site for site, zone in sorted(self.sites.items()) if str(zone) == str(self.chart)]
        elsewhere = ", ".join(
            f"{site} {_zone_name(zone, moment)}" for site, zone in sorted(self.sites.items())
            if str(zone) != str(self.chart)
        )
        if not elsewhere:
            return f"Times in {chart}, the sites' time zone."
        return (f"Charts in {chart}, the time zone of {', '.join(here)} (most appointments); "
                f"a table row with a site in that site's zone: {elsewhere}.")

    def unset(self, time_zones: Mapping[str, str]) -> list[str]:
        return sorted(site for site in self.sites if site not in time_zones)


def _zone_name(zone: tzinfo, moment: datetime) -> str:
    abbreviation = moment.astimezone(zone).tzname() or ""
    return str(zone) if abbreviation in ("", "UTC", str(zone)) else f"{zone} ({abbreviation})"


def _when(moment: datetime, zone: tzinfo, *, year: bool = False, abbreviation: bool = True) -> str:
    local = moment.astimezone(zone)
    text = local.strftime("%a %d %b %Y %H:%M" if year else "%a %d %b %H:%M")
    return f"{text} {local.tzname()}" if abbreviation else text


def _panel_px(w: int, h: int) -> tuple[int, int]:
    """A panel's size at the reference width (px): what its chart is drawn for."""
    unit = (GRID_WIDTH - 23 * GAP) / 24
    return int(unit * w + GAP * (w - 1)), int(ROW_UNIT * h + GAP * (h - 1))


def _field_overrides(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column name, the override properties Grafana applies (unit, color, mappings)."""
    by_name: dict[str, dict[str, Any]] = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override.get("matcher", {}).get("id") == "byName":
            properties = by_name.setdefault(override["matcher"]["options"], {})
            for prop in override.get("properties", []):
                properties[prop.get("id")] = prop.get("value")
    return by_name


def _units(panel: dict[str, Any]) -> tuple[str, int | None, dict[str, str]]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    by_name = {name: props["unit"] for name, props in _field_overrides(panel).items() if "unit" in props}
    return defaults.get("unit", "short"), defaults.get("decimals"), by_name


def _series_colors(panel: dict[str, Any]) -> dict[str, str]:
    """Fixed colours of series by name (e.g. severity high = red)."""
    return {
        name: props["color"]["fixedColor"] for name, props in _field_overrides(panel).items()
        if isinstance(props.get("color"), dict) and props["color"].get("fixedColor")
    }


def _value_colors(panel: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per column, the colour of each value (Grafana value mappings with a colour)."""
    colors: dict[str, dict[str, str]] = {}
    for name, props in _field_overrides(panel).items():
        for mapping in props.get("mappings") or []:
            if mapping.get("type") == "value":
                for value, result in mapping.get("options", {}).items():
                    if result.get("color"):
                        colors.setdefault(name, {})[value] = color_of(result["color"])
    return colors


def _threshold_color(panel: dict[str, Any], value: Any) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    color = "green"
    for step in steps:
        if step.get("value") is None or (isinstance(value, int | float) and value >= step["value"]):
            color = step.get("color", color)
    return color_of(color)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _readable(value: Any) -> str:
    """A label for people: "behavioral_health" reads "behavioral health"."""
    return "–" if value is None else str(value).replace("_", " ")


def _cell(value: Any, unit: str | None) -> tuple[str, bool]:
    if isinstance(value, bool) or _missing(value):
        return ("–" if _missing(value) else str(value)), False
    if isinstance(value, int | float):
        return format_value(value, unit or "short", None if unit or isinstance(value, int) else 1), True
    return _readable(value), False


def _render_stat(result: PanelResult) -> str:
    unit, decimals, by_name = _units(result.panel)
    row = result.rows[0]
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


def _nothing_to_draw(rows: Sequence[tuple[Any, ...]], first: int, kind: str) -> str | None:
    """Why a panel with rows still has nothing to show, if so: only NULLs (a rate over no
    visits), or a chart whose every value is 0 (no bar, a flat line on the axis)."""
    values = [value for row in rows for value in row[first:] if not isinstance(value, str)]  # not series names
    if all(_missing(value) for value in values):
        return "No data"
    if kind != "stat" and all(_missing(value) or value == 0 for value in values):
        return "Nothing to draw: every value is 0"
    return None


def is_live(panel: dict[str, Any]) -> bool:
    """A panel about this moment ("Waiting now"): only meaningful while the range is live."""
    return str(panel.get("title", "")).lower().endswith(" now")


def _render_table(result: PanelResult, zones: ReportZones, width: int, height: int) -> str:
    _, _, by_name = _units(result.panel)
    value_colors = _value_colors(result.panel)
    rows = result.rows
    # Headers wrap where the columns are narrow ("Median delay (min)"): room for three
    # lines, as on a printed page, which is narrower than the reference window.
    column_px = (width - 2 * BODY_PADDING) / max(len(result.columns), 1)
    wraps = any(len(column) * CHAR_PX + 10 > column_px for column in result.columns)
    fit = max((height - HEADER - 8 - (54 if wraps else 26) - 16) // TABLE_ROW, 1)
    rows = result.rows[:fit]
    site = result.columns.index("Site") if "Site" in result.columns else None
    row_zones = [zones.zone_of(row[site]) if site is not None else zones.chart for row in rows]
    # One zone for every row: name it once in the header; several: on each time.
    single = len({str(zone) for zone in row_zones}) <= 1
    numeric_columns = {i for i, t in enumerate(result.types) if _is_numeric(t)}
    times = {i for i, value in enumerate(rows[0]) if isinstance(value, datetime)} if rows else set()
    head = []
    for i, column in enumerate(result.columns):
        label = column
        if i in times and single and rows:
            label = f"{column} ({_aware(rows[0][i]).astimezone(row_zones[0]).tzname()})"
        elif by_name.get(column) in HEADER_UNITS:
            label = f"{column} ({HEADER_UNITS[by_name[column]]})"
        head.append(f'<th class="{"num" if i in numeric_columns else ""}">{escape(label)}</th>')
    body = []
    for row, zone in zip(rows, row_zones):
        cells = []
        for i, (name, value) in enumerate(zip(result.columns, row)):
            if isinstance(value, datetime):
                text, numeric = _when(_aware(value), zone, abbreviation=not single), False
            elif by_name.get(name) in HEADER_UNITS and isinstance(value, int | float):
                text, numeric = format_value(value, "short", 1), True
            else:
                text, numeric = _cell(value, by_name.get(name))
            color = value_colors.get(name, {}).get(str(value))
            style = f' style="color:{color}"' if color else ""
            cells.append(f'<td class="{"num" if numeric else ""}"{style}>{escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = len(result.rows) - fit
    note = f'<div class="more">… {more} more rows in Grafana</div>' if more > 0 else ""
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"


def _render_body(result: PanelResult, time_range: TimeRange, zones: ReportZones, width: int, height: int) -> str:
    panel = result.panel
    if result.error:
        return f'<div class="error">{escape(result.error)}</div>'
    kind = panel["type"]
    # Nothing to draw (no rows, or only NULLs: a rate over no visits) is said, not drawn
    # as empty axes and a legend.
    first = {"timeseries": 1, "barchart": 1}.get(kind, 0)
    said = "No data" if not result.rows else None if kind == "table" else _nothing_to_draw(result.rows, first, kind)
    if said:
        return f'<div class="empty">{said}</div>'
    unit, _, _ = _units(panel)
    chart_w, chart_h = width - 2 * BODY_PADDING, height - HEADER - 8
    colors = _series_colors(panel)
    if kind == "stat":
        return _render_stat(result)
    if kind == "timeseries":
        times, series = _series(result)
        bars = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("drawStyle") == "bars"
        gap = panel_interval(panel, time_range) * 3
        return line_chart(times, series, start=time_range.start, end=time_range.end, width=chart_w,
                          height=chart_h, unit=unit, bars=bars, gap=gap, zone=zones.chart, colors=colors)
    if kind == "barchart":
        options = panel.get("options", {})
        categories = [_readable(row[0]) for row in result.rows]
        series = {name: [row[i] for row in result.rows] for i, name in enumerate(result.columns) if i}
        stacking = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("stacking", {})
        return bar_chart(categories, series, width=chart_w, height=chart_h, unit=unit,
                         horizontal=options.get("orientation") == "horizontal",
                         stacked=stacking.get("mode") == "normal", colors=colors)
    if kind == "table":
        return _render_table(result, zones, width, height)
    return f'<div class="error">panel type {escape(kind)} is not rendered in the report</div>'


def _render_panel(result: PanelResult, time_range: TimeRange, zones: ReportZones, now: datetime) -> str:
    panel = result.panel
    grid = panel["gridPos"]
    width, height = _panel_px(grid["w"], grid["h"])
    style = f'grid-column:{grid["x"] + 1}/span {grid["w"]};grid-row:{grid["y"] + 1}/span {grid["h"]}'
    title = escape(panel.get("title", ""))
    info = f'<span class="info" title="{escape(panel.get("description", ""))}">i</span>'
    if is_live(panel) and not time_range.start <= now <= time_range.end + LIVE_WITHIN:
        body = (f'<div class="empty">Not live: this range ended {escape(_when(time_range.end, zones.chart))}, '
                "and this panel counts what is happening now.</div>")
    else:
        body = _render_body(result, time_range, zones, width, height)
    return (
        f'<div class="panel" style="{style}" data-title="{title}">'
        f'<h3>{title}{info}</h3><div class="body">{body}</div></div>'
    )


def render_dashboard(
    client: Any,
    dashboard: dict[str, Any],
    time_range: TimeRange,
    selections: Sequence[Selection],
    zones: ReportZones | None = None,
    now: datetime | None = None,
) -> tuple[str, list[PanelResult]]:
    """One dashboard's ``<section>`` and the results of its panels (times in ``zones``,
    UTC without; "now" panels live when the range reaches ``now``, the wall clock without)."""
    zones = zones or ReportZones(UTC, {})
    now = now or datetime.now(UTC)
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
        items.append(_render_panel(result, time_range, zones, now))
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
        f'<div class="vars">{variables}<span><b>Range</b>{escape(_span(time_range, zones.chart))}</span></div>'
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
    time_zones: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Path:
    """Render every generated dashboard (or those whose uid is in ``only``) from
    ``database`` into one HTML file at ``out_path``.

    All panels use [time_from, time_to]; with ``dashboard_ranges`` each dashboard uses its
    own default range instead (e.g. "today" for operations, the day of the chart zone),
    with "now" at ``time_to``. ``time_zones`` maps site_id -> IANA zone (sites without
    one read in UTC). ``now`` is the moment the report is made (the wall clock by
    default): panels about "now" show only for a range that reaches it, and it is the
    "generated" time printed.
    """
    time_range = TimeRange(_utc(time_from), _utc(time_to))
    time_zones = dict(time_zones or {})
    now = _utc(now) if now is not None else datetime.now(UTC)
    dashboards = [d for d in load_generated() if only is None or d["uid"] in only]
    sections = []
    with default_database(client, database):
        appointments = {str(site): int(count) for site, count in client.query(
            "SELECT site_id, count() FROM appointment_journeys FINAL GROUP BY site_id").result_rows}
        zones = ReportZones.of(appointments, time_zones)
        for dashboard in dashboards:
            own = (
                dashboard_range(dashboard, time_range.end.astimezone(zones.chart), time_range.start)
                if dashboard_ranges else time_range
            )
            html, _ = render_dashboard(client, dashboard, own, all_selections(client, own, dashboard), zones, now)
            sections.append(html)
    links = " · ".join(f'<a href="#{escape(d["uid"])}">{escape(d["title"])}</a>' for d in dashboards)
    unset = zones.unset(time_zones)
    missing = (
        f" No time zone set for {', '.join(unset)} (JOURNEYS_SITE_TIME_ZONES): read in UTC." if unset else ""
    )
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>Patient journeys — dashboards report</title>"
        f"<style>{CSS}</style></head><body><main>"
        "<header class=\"report\"><h1>Patient journeys</h1>"
        f'<div class="muted">Database <b>{escape(database)}</b> · {escape(_span(time_range, zones.chart))} · '
        f"generated {escape(_when(now, zones.chart, year=True))}</div>"
        f'<div class="muted">{escape(zones.describe(time_range.end) + missing)}</div>'
        f'<div class="muted">{links}</div></header>'
        f"{''.join(sections)}</main></body></html>\n"
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path


def _span(time_range: TimeRange, zone: tzinfo) -> str:
    """The range in ``zone``, its abbreviation once, or twice across a DST change (EST – EDT)."""
    same = time_range.start.astimezone(zone).tzname() == time_range.end.astimezone(zone).tzname()
    start = _when(time_range.start, zone, year=True, abbreviation=not same)
    return f"{start} – {_when(time_range.end, zone, year=True)}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
