"""Every dashboard panel's SQL runs on a realistic week in ClickHouse (chdb) and returns
what its panel needs; no panel leaks a patient identifier; the HTML report renders.

The week is the real thing: the simulator's clinic traffic, through the offline
journey pipeline (the worker's logic), written by the sink's RowWriter.

The SQL is taken from the committed JSON (what Grafana gets), expanded exactly as the
ClickHouse plugin does (``dashboards.macros``), with the variables at "All", at one
value and at several values.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.generate import iter_panels, load_generated
from dashboards.macros import ALL, Selection, TimeRange, expand
from dashboards.query import all_selections, panel_sql, variable_queries
from dashboards.report import render_report
from runtime.config import Settings
from simulator import SimulationConfig, simulate
from simulator.world import build_world
from sinks.client import connect
from sinks.migrate import migrate
from sinks.rows import RowWriter
from streams.assemble import offline_pipeline
from tests.rows import clickhouse_test_dsn, unique_database

DASHBOARDS = load_generated()
PANELS = [(d["uid"], p) for d in DASHBOARDS for p in iter_panels(d)]


@dataclass(frozen=True)
class LoadedWeek:
    client: Client
    database: str
    time_range: TimeRange
    options: dict[str, list[str]]  # variable -> its values at "All"
    patient_ids: frozenset[str]  # the source's patient identifiers (PHI), never to be shown


def open_clickhouse(directory: Path) -> Client:
    """chdb in ``directory``, or the server named by ``$CLICKHOUSE_URL`` (like the sink tests)."""
    # One process holds one chdb directory: if another test module opened one and kept
    # it, share it (our rows live in their own database).
    try:
        return connect(clickhouse_test_dsn(directory))
    except Exception as error:  # chdb raises a plain RuntimeError-like error here
        found = re.search(r"already initialized with path '([^']+)'", str(error))
        if not found:
            raise
        return connect(f"chdb://{found.group(1)}")


# Tuesday to Monday; the world stops at 15:10 UTC on the Monday (10:10 in New York,
# 07:10 in Seattle), so the last journeys are live: patients waiting, visits in progress.
WEEK = SimulationConfig(
    seed=7,
    days=7,
    start=dt.date(2026, 3, 3),
    cutoff=dt.datetime(2026, 3, 9, 15, 10, tzinfo=UTC),
    duplicate_fraction=0.02,
    out_of_order_fraction=0.05,
)


def load_week(client: Client, database: str) -> frozenset[str]:
    """THE data loading step: simulate a week, run the offline pipeline (the worker's
    journey logic, default settings), write its bundles with the sink's RowWriter.
    Returns the raw patient identifiers the events carried."""
    lines = simulate(WEEK).lines
    result = offline_pipeline(Settings.model_construct()).run(lines)
    writer = RowWriter(client, database)
    writer.write(result.bundles)
    assert not writer.rejected, writer.rejected
    return frozenset(json.loads(line)["patient_id"] for line in lines)


def loaded(client: Client, database: str, patient_ids: frozenset[str]) -> LoadedWeek:
    """The loaded data's range and variable values; the client's default database is it."""
    # Panels name tables without a database, like Grafana's datasource with
    # defaultDatabase = journeys.
    client.database = database
    start, end = client.query(
        "SELECT min(scheduled_start), max(last_event_at) FROM appointment_journeys FINAL"
    ).result_rows[0]
    time_range = TimeRange(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    options = {s.name: list(s.options) for s in all_selections(client, time_range, DASHBOARDS[0])}
    return LoadedWeek(client, database, time_range, options, patient_ids)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedWeek]:
    client = open_clickhouse(tmp_path_factory.mktemp("chdb") / "clickhouse")
    database = unique_database("dashboards")
    migrate(client, database)
    patient_ids = load_week(client, database)
    try:
        yield loaded(client, database, patient_ids)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


def _distinct(week: LoadedWeek, column: str, where: str, **parameters: str) -> list[str]:
    rows = week.client.query(
        f"SELECT DISTINCT {column} FROM appointment_journeys WHERE {where} AND {column} IS NOT NULL ORDER BY {column}",
        parameters=parameters,
    ).result_rows
    return [row[0] for row in rows]


def _providers_of(week: LoadedWeek, site: str) -> list[str]:
    return _distinct(week, "provider_id", "site_id = {site:String}", site=site)


def _scenarios(week: LoadedWeek) -> dict[str, list[Selection]]:
    o = week.options
    every = {name: Selection(name, ALL, tuple(values)) for name, values in o.items()}
    site = o["site"][0]
    return {
        "all": list(every.values()),
        "one-site": [Selection("site", [site]), every["department"], every["provider"]],
        "one-each": [
            Selection("site", [site]),
            Selection("department", [department := _distinct(week, "department", "site_id = {s:String}", s=site)[0]]),
            Selection("provider", _distinct(week, "provider_id", "site_id = {s:String} AND department = {d:String}",
                                            s=site, d=department)[:1]),
        ],
        "several": [
            Selection("site", o["site"][:2]),
            Selection("department", o["department"][1:3]),
            every["provider"],
        ],
    }


def _base(type_name: str) -> str:
    inner = type_name
    for wrapper in ("Nullable", "LowCardinality"):
        while inner.startswith(f"{wrapper}(") and inner.endswith(")"):
            inner = inner[len(wrapper) + 1 : -1]
    return inner


def _is_number(type_name: str) -> bool:
    return re.match(r"(U?Int\d+|Float\d+|Decimal)", _base(type_name)) is not None


def _is_time(type_name: str) -> bool:
    return _base(type_name).startswith(("DateTime", "Date"))


def _is_text(type_name: str) -> bool:
    return _base(type_name) in ("String", "FixedString")


def run_panel(week: LoadedWeek, panel: dict[str, Any], selections: list[Selection]) -> Any:
    return week.client.query(panel_sql(panel, week.time_range, selections))


def check_shape(panel: dict[str, Any], result: Any, need_rows: bool) -> None:
    """The columns and types the panel's visualisation needs."""
    names = list(result.column_names)
    types = [t.name for t in result.column_types]
    rows = result.result_rows
    kind = panel["type"]
    if need_rows:
        assert rows, "no rows on a realistic week"
    if not rows and not names:
        return  # chdb reports no columns for an empty result: nothing to check
    if kind == "stat":
        assert len(rows) == 1, f"a stat needs exactly one row, got {len(rows)}"
        assert all(_is_number(t) for t in types), f"stat columns must be numbers: {types}"
        if need_rows:
            assert any(value is not None for value in rows[0]), "every value is NULL"
    elif kind == "timeseries":
        assert names[0] == "time" and _is_time(types[0]), f"first column must be time: {names[0]} {types[0]}"
        values = types[2:] if len(types) > 2 and _is_text(types[1]) else types[1:]
        assert values and all(_is_number(t) for t in values), f"series must be numbers: {types}"
        times = [row[0] for row in rows]
        assert times == sorted(times), "time must be ascending"
    elif kind == "barchart":
        x_field = panel["options"]["xField"]
        assert names[0] == x_field and _is_text(types[0]), f"first column must be {x_field} (text): {names}, {types}"
        assert len(types) > 1 and all(_is_number(t) for t in types[1:]), f"bars must be numbers: {types}"
    elif kind == "table":
        assert names and all(name.strip() for name in names)
    else:
        raise AssertionError(f"no shape check for panel type {kind}")


@pytest.mark.parametrize(
    ("uid", "panel"), PANELS, ids=[f"{uid}:{panel['title']}" for uid, panel in PANELS]
)
def test_panel_sql_returns_what_the_panel_needs(week: LoadedWeek, uid: str, panel: dict[str, Any]) -> None:
    for scenario, selections in _scenarios(week).items():
        try:
            result = run_panel(week, panel, selections)
            # A week holds every panel's data but the loyalty estimates', whose return
            # windows take 45-90 days to pass (see test_loyalty_panels_on_a_season).
            check_shape(panel, result, need_rows=scenario == "all" and uid != "journeys-loyalty")
        except Exception as error:
            raise AssertionError(f"{uid} / {panel['title']} with {scenario} variables: {error}") from error


# Five months at two sites: return windows pass, patients come back or leave.
SEASON = SimulationConfig(seed=5, days=150, sites=2, volume=3)


@pytest.fixture(scope="module")
def season(week: LoadedWeek, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedWeek]:
    # A client of its own (same engine): its default database is the season's.
    client = open_clickhouse(tmp_path_factory.mktemp("chdb") / "clickhouse")
    database = unique_database("loyalty")
    migrate(client, database)
    writer = RowWriter(client, database)
    writer.write(offline_pipeline(Settings.model_construct()).run(simulate(SEASON).lines).bundles)
    assert not writer.rejected, writer.rejected
    try:
        yield loaded(client, database, frozenset())
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


LOYALTY_PANELS = [(uid, panel) for uid, panel in PANELS if uid == "journeys-loyalty"]


@pytest.mark.parametrize(("uid", "panel"), LOYALTY_PANELS, ids=[p["title"] for _, p in LOYALTY_PANELS])
def test_loyalty_panels_on_a_season(season: LoadedWeek, uid: str, panel: dict[str, Any]) -> None:
    for scenario, selections in _scenarios(season).items():
        try:
            result = run_panel(season, panel, selections)
            check_shape(panel, result, need_rows=scenario == "all")
        except Exception as error:
            raise AssertionError(f"{panel['title']} with {scenario} variables: {error}") from error


def test_loyalty_headline_names_a_cost_with_its_interval(season: LoadedWeek) -> None:
    panel = next(p for _, p in LOYALTY_PANELS if p["title"] == "What friction costs")
    (finding,), = run_panel(season, panel, _scenarios(season)["all"]).result_rows
    assert re.fullmatch(r"Patients who .+ were \d+\.\dx \(\d+\.\d-\d+\.\d\) as likely not to come back\.", finding) or \
        finding.startswith("No friction rule shows a clear effect"), finding


def test_variable_queries_list_sites_departments_providers(week: LoadedWeek) -> None:
    truth = {
        column: [row[0] for row in week.client.query(
            f"SELECT DISTINCT {column} FROM appointment_journeys FINAL WHERE {column} IS NOT NULL ORDER BY {column}"
        ).result_rows]
        for column in ("site_id", "department", "provider_id")
    }
    assert week.options == {"site": truth["site_id"], "department": truth["department"],
                            "provider": truth["provider_id"]}
    assert len(week.options["site"]) == WEEK.sites
    # Chained: one site narrows the providers to that site's.
    site = week.options["site"][0]
    sql = expand(variable_queries(DASHBOARDS[0])["provider"], week.time_range, timedelta(minutes=1),
                 [Selection("site", [site]), Selection("department", ALL, tuple(week.options["department"]))])
    providers = [row[0] for row in week.client.query(sql).result_rows]
    assert providers == _providers_of(week, site)
    assert 0 < len(providers) < len(week.options["provider"])


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d["uid"] for d in DASHBOARDS])
def test_every_dashboards_variables_list_the_same_values(week: LoadedWeek, dashboard: dict[str, Any]) -> None:
    selections = all_selections(week.client, week.time_range, dashboard)
    assert {s.name: list(s.options) for s in selections} == week.options


def test_a_single_site_filter_really_filters(week: LoadedWeek) -> None:
    panel = next(p for uid, p in PANELS if p["title"] == "Lobby and room waits by site")
    o = week.options
    for site in o["site"]:
        rows = run_panel(week, panel, [Selection("site", [site]), Selection("department", ALL, tuple(o["department"])),
                                       Selection("provider", ALL, tuple(o["provider"]))]).result_rows
        assert [row[0] for row in rows] == [site]


def test_live_panels_see_the_clinics_at_the_cutoff(week: LoadedWeek) -> None:
    """On the last day, "now" is mid-morning in the clinics: patients are waiting."""
    panel = next(p for uid, p in PANELS if p["title"] == "Waiting now")
    waiting, longest = run_panel(week, panel, _scenarios(week)["all"]).result_rows[0]
    assert waiting > 0 and longest > 0


def _identifiers(week: LoadedWeek) -> set[str]:
    found: set[str] = set(week.patient_ids)
    for table, column in (("appointment_journeys", "patient_key"), ("appointment_journeys", "appointment_id"),
                          ("patient_journeys", "patient_key")):
        found |= {row[0] for row in week.client.query(f"SELECT DISTINCT {column} FROM {table}").result_rows}
    return found


def test_no_panel_returns_a_patient_identifier(week: LoadedWeek) -> None:
    identifiers = _identifiers(week)
    assert len(identifiers) > 1000 and week.patient_ids <= identifiers
    forbidden_columns = {"patient_key", "patient_id", "appointment_id", "event_id"}
    all_variables = _scenarios(week)["all"]
    for uid, panel in PANELS:
        result = run_panel(week, panel, all_variables)
        leaked_columns = forbidden_columns & {name.lower() for name in result.column_names}
        assert not leaked_columns, f"{uid} / {panel['title']} returns {leaked_columns}"
        for row in result.result_rows:
            for value in row:
                assert not (isinstance(value, str) and value in identifiers), (
                    f"{uid} / {panel['title']} shows an identifier: {value!r}"
                )


def test_report_renders_every_panel_offline(week: LoadedWeek, tmp_path: Path) -> None:
    start, end = week.time_range.start, week.time_range.end
    # Made at the end of the data, as a live report: the "now" panels show their numbers.
    path = render_report(week.client, week.database, tmp_path / "report.html", start, end, now=end)
    html = path.read_text(encoding="utf-8")
    assert week.client.database == week.database  # restored after the report
    assert 'class="error"' not in html and "Not live" not in html
    # A week holds every panel's data but the loyalty dashboard's, whose returns take 90 days.
    for section in html.split('<section class="dashboard"')[1:]:
        if not section.startswith(' id="journeys-loyalty"'):
            assert 'class="empty"' not in section, section[:80]
    for dashboard in DASHBOARDS:
        assert f'id="{dashboard["uid"]}"' in html
        for panel in iter_panels(dashboard):
            assert f'data-title="{panel["title"]}"' in html.replace("&#x27;", "'")
    # Every chart is an SVG and every stat a number, unless the panel says why not.
    drawn = {"timeseries": "<svg", "barchart": "<svg", "stat": '<div class="stat">', "table": "<table>"}
    for chunk in html.split('<div class="panel"')[1:]:
        kind = next(p["type"] for _, p in PANELS if f'data-title="{p["title"]}"' in chunk.replace("&#x27;", "'"))
        assert drawn[kind] in chunk or 'class="empty"' in chunk, chunk[:200]
    # Self-contained: no script, no stylesheet or image from elsewhere.
    assert "<script" not in html and "src=" not in html and "@import" not in html
    assert "url(" not in html
    identifiers = _identifiers(week)
    assert not [identifier for identifier in identifiers if identifier in html]


def test_report_with_each_dashboards_own_range(week: LoadedWeek, tmp_path: Path) -> None:
    path = render_report(week.client, week.database, tmp_path / "ops.html", week.time_range.start,
                         week.time_range.end, only=["journeys-operations"], dashboard_ranges=True)
    html = path.read_text(encoding="utf-8")
    assert 'id="journeys-operations"' in html and 'id="journeys-access"' not in html
    assert f"{week.time_range.end:%a %d %b %Y} 00:00" in html  # "today" = the last day of data
    assert 'class="error"' not in html


def test_report_reads_in_the_sites_time_zones(week: LoadedWeek, tmp_path: Path) -> None:
    zones = {site.site_id: site.tz.key for site in build_world(WEEK).sites}
    path = render_report(week.client, week.database, tmp_path / "ops.html", week.time_range.start,
                         week.time_range.end, only=["journeys-operations"], dashboard_ranges=True,
                         time_zones=zones, now=week.time_range.end)
    html = path.read_text(encoding="utf-8")
    # "Today" is the local day (the world stops at 15:10 UTC, 11:10 in New York on DST).
    assert re.search(r"<b>Range</b>Mon 09 Mar 2026 00:00 – Mon 09 Mar 2026 (11|10|08):\d\d (EDT|CDT|PDT)", html)
    assert all(zone in html for zone in zones.values())
    # The friction feed's rows read in each row's own site's zone.
    assert re.search(r"<td[^>]*>Mon 09 Mar \d\d:\d\d (EDT|CDT|PDT)</td>", html)
    assert "UTC" not in html.split("</header>", 1)[1]
