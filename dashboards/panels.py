"""Panel and variable builders shared by every dashboard (Grafana Foundation SDK).

Four panel kinds, each with the result shape the report and the tests check:

- ``stat``: one row; every column a number (big numbers);
- ``timeseries``: a ``time`` column first, then numbers (or one string column naming
  the series, then numbers: the plugin turns long data into one series per value);
- ``bars``: a string category column first (``x_field``), then numbers;
- ``table``: any columns, one row per line.

Every panel needs a description in the SPEC's terms: it is what an operations lead
reads when hovering the (i) icon, so the builders refuse an empty one.

SQL conventions (checked by ``dashboards.macros``): argument-less macros are written in
parentheses, ``($__toTime)``; filters come from :data:`FILTERS`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    barchart,
    common,
    dashboard,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from dashboards.clickhouse import (
    DATASOURCE_NAME,
    DATASOURCE_UID,
    DATASOURCE_VARIABLE,
    PLUGIN_ID,
    ClickHouseQueryBuilder,
    Format,
    datasource_ref,
)

# The site / department / provider filters every journey panel applies. "All" turns a
# filter into 1=1, so appointments without a provider are not dropped by "All providers".
FILTERS = (
    "$__conditionalAll(site_id IN (${site:singlequote}), $site)"
    " AND $__conditionalAll(department IN (${department:singlequote}), $department)"
    " AND $__conditionalAll(provider_id IN (${provider:singlequote}), $provider)"
)
# For tables without a provider column (site_hourly): provider does not apply there.
SITE_FILTERS = (
    "$__conditionalAll(site_id IN (${site:singlequote}), $site)"
    " AND $__conditionalAll(department IN (${department:singlequote}), $department)"
)

PanelT = TypeVar("PanelT", stat.Panel, table.Panel, timeseries.Panel, barchart.Panel)


def sql(text: str) -> str:
    """Dedent a query and put the shared filters in place of ``{filters}`` / ``{site_filters}``.

    >>> sql('''
    ...     SELECT 1
    ...     WHERE {site_filters}
    ... ''').splitlines()[1][:40]
    'WHERE $__conditionalAll(site_id IN (${si'
    """
    return textwrap.dedent(text).strip().replace("{filters}", FILTERS).replace("{site_filters}", SITE_FILTERS)


def _checked(title: str, description: str) -> None:
    if not title.strip() or len(description.strip()) < 20:
        raise ValueError(f"panel {title!r} needs a title and a description that says what it measures")


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


GOOD: Sequence[tuple[float | None, str]] = [(None, "green")]


def _panel(panel: PanelT, title: str, description: str, query: str, fmt: Format, width: int, height: int) -> PanelT:
    """What every panel has: a checked title and description, the ClickHouse query, a size."""
    _checked(title, description)
    return (
        panel.title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(ClickHouseQueryBuilder(query, fmt))
        .span(width)
        .height(height)
    )


def stat_panel(
    title: str,
    description: str,
    query: str,
    *,
    unit: str = "short",
    decimals: int | None = None,
    thresholds: Sequence[tuple[float | None, str]] | None = None,
    units: dict[str, str] | None = None,
    width: int = 4,
    height: int = 4,
) -> stat.Panel:
    """A big number (one row, numeric columns); colour from ``thresholds``, ``units`` per column."""
    panel = (
        _panel(stat.Panel(), title, description, query, Format.TABLE, width, height)
        .unit(unit)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(thresholds or GOOD))
    )
    panel = _with_overrides(panel, units=units)
    return panel.decimals(decimals) if decimals is not None else panel


def timeseries_panel(
    title: str,
    description: str,
    query: str,
    *,
    unit: str = "short",
    min_interval: str | None = None,
    bars: bool = False,
    colors: dict[str, str] | None = None,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A time series (``time`` column first); ``min_interval`` floors ``$__timeInterval``;
    ``colors`` fixes a series' colour by name (e.g. ``{"Abandoned": "red"}``)."""
    panel = (
        _panel(timeseries.Panel(), title, description, query, Format.TIME_SERIES, width, height)
        .unit(unit)
        .line_width(2)
        .fill_opacity(12)
        .span_nulls(False)
        .legend(common.VizLegendOptions().display_mode(common_models.LegendDisplayMode.LIST).placement(
            common_models.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI).sort(
            common_models.SortOrder.NONE))
    )
    if bars:
        panel = panel.draw_style(common_models.GraphDrawStyle.BARS).fill_opacity(70)
    if min_interval:
        panel = panel.interval(min_interval)
    return _with_overrides(panel, colors=colors)


def bar_panel(
    title: str,
    description: str,
    query: str,
    *,
    x_field: str,
    unit: str = "short",
    horizontal: bool = False,
    stacked: bool = False,
    colors: dict[str, str] | None = None,
    width: int = 12,
    height: int = 8,
) -> barchart.Panel:
    """Bars per category: ``x_field`` is the first (string) column, the others are numbers;
    ``colors`` fixes a series' colour by name (e.g. severity ``{"High": "red"}``)."""
    panel = (
        _panel(barchart.Panel(), title, description, query, Format.TABLE, width, height)
        .unit(unit)
        .x_field(x_field)
        .show_value(common_models.VisibilityMode.AUTO)
        .fill_opacity(80)
        .orientation(
            common_models.VizOrientation.HORIZONTAL if horizontal else common_models.VizOrientation.VERTICAL
        )
        .legend(common.VizLegendOptions().display_mode(common_models.LegendDisplayMode.LIST).placement(
            common_models.LegendPlacement.BOTTOM).show_legend(True))
    )
    if stacked:
        panel = panel.stacking(common_models.StackingMode.NORMAL)
    return _with_overrides(panel, colors=colors)


def table_panel(
    title: str,
    description: str,
    query: str,
    *,
    units: dict[str, str] | None = None,
    value_colors: dict[str, dict[str, str]] | None = None,
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table; ``units`` sets a unit per column name (e.g. ``{"Median delay": "m"}``),
    ``value_colors`` a text colour per value of a column (``{"Severity": {"high": "red"}}``)."""
    panel = (
        _panel(table.Panel(), title, description, query, Format.TABLE, width, height)
        .cell_height(common_models.TableCellHeight.SM)
        .filterable(False)
    )
    return _with_overrides(panel, units=units, value_colors=value_colors)


def _with_overrides(
    panel: PanelT,
    *,
    units: dict[str, str] | None = None,
    colors: dict[str, str] | None = None,
    value_colors: dict[str, dict[str, str]] | None = None,
) -> PanelT:
    """Per-column field overrides (Grafana's "override by name"), which the report reads too."""
    properties: dict[str, list[dashboard_models.DynamicConfigValue]] = {}
    for column, unit in (units or {}).items():
        properties.setdefault(column, []).append(dashboard_models.DynamicConfigValue(id_val="unit", value=unit))
    for column, color in (colors or {}).items():
        properties.setdefault(column, []).append(
            dashboard_models.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color}))
    for column, by_value in (value_colors or {}).items():
        options = {value: {"color": color, "index": i} for i, (value, color) in enumerate(by_value.items())}
        properties.setdefault(column, []).extend([
            dashboard_models.DynamicConfigValue(id_val="mappings", value=[{"type": "value", "options": options}]),
            dashboard_models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ])
    for column in sorted(properties):
        panel = panel.override_by_name(column, properties[column])
    return panel


# -- variables ----------------------------------------------------------------------------

# From journey_dimensions (migration 0006): a few hundred rows, where a DISTINCT over
# appointment_journeys read the whole table on every dashboard load (0.5-1.2 s on 10 M).
_SITE_SQL = "SELECT DISTINCT site_id FROM journey_dimensions ORDER BY site_id"
_DEPARTMENT_SQL = (
    "SELECT DISTINCT department FROM journey_dimensions"
    " WHERE $__conditionalAll(site_id IN (${site:singlequote}), $site) ORDER BY department"
)
_PROVIDER_SQL = (
    "SELECT DISTINCT provider_id FROM journey_dimensions WHERE provider_id != ''"
    " AND $__conditionalAll(site_id IN (${site:singlequote}), $site)"
    " AND $__conditionalAll(department IN (${department:singlequote}), $department)"
    " ORDER BY provider_id"
)


def _query_variable(name: str, label: str, query: str, description: str) -> dashboard.QueryVariable:
    # Multi-select with "All" and no custom all value: "All" is "$__all", which
    # $__conditionalAll turns into 1=1 (a custom all value would defeat that).
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .query(query)
        .datasource(datasource_ref())
        .multi(True)
        .include_all(True)
        .current(dashboard_models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dashboard_models.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )


def journey_variables() -> list[cogbuilder.Builder[dashboard_models.VariableModel]]:
    """Datasource, site, department (within the sites) and provider (within both)."""
    return [
        dashboard.DatasourceVariable(DATASOURCE_VARIABLE)
        .label("ClickHouse")
        .type(PLUGIN_ID)
        .current(dashboard_models.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
        .hide(dashboard_models.VariableHide.HIDE_VARIABLE),
        _query_variable("site", "Site", _SITE_SQL, "Clinic / facility (site_id of the events)."),
        _query_variable("department", "Department", _DEPARTMENT_SQL, "Department within the selected sites."),
        _query_variable("provider", "Provider", _PROVIDER_SQL, "Provider within the selected sites and departments."),
    ]


VARIABLE_QUERIES: dict[str, str] = {"site": _SITE_SQL, "department": _DEPARTMENT_SQL, "provider": _PROVIDER_SQL}


def journeys_dashboard(uid: str, title: str, description: str, *, time_from: str, refresh: str) -> dashboard.Dashboard:
    """A dashboard with the journeys tags, variables, time range and auto-refresh."""
    builder = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["patient-journeys", "clickhouse"])
        .editable()
        .timezone("browser")
        .time(time_from, "now")
        .refresh(refresh)
        .timepicker(dashboard.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "1h"]))
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("Patient journeys")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["patient-journeys"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in journey_variables():
        builder = builder.with_variable(variable)
    return builder
