"""Migration 0005 changes no panel's answer: every panel of every dashboard, on a scaled
data set, returns the same rows on the month-partitioned tables (read the way Grafana's
profile reads them: FINAL merged per partition) as on unpartitioned tables.

The data: ``bench/clickhouse_scale.py``'s week across the end of March, written by the
sink's RowWriter (reschedules across the month boundary leave tombstones), scaled inside
ClickHouse to about 50,000 journeys over ten weeks and two site groups. The reference gets
every migration but 0005's repartitioning (so the tables of before it, with the later
columns and lookup tables) and the same week as the worker emitted it, every row inserted as it came (as
the writer did before 0005), scaled the same way. The tables the panels read instead of
a scan (``journey_dimensions``, ``connection_issues``, ``site_hourly``) are checked
against the scan. Times are the benchmark's business, not this test's.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.clickhouse_scale import Shape, panels, ranges, scale, seed_week, week_bundles
from dashboards.macros import TimeRange
from dashboards.query import PANEL_SETTINGS, all_selections, panel_sql
from sinks import site_hourly
from sinks.client import Client, connect
from sinks.migrate import discover, migrate, split_statements
from sinks.rows import Bundle
from sinks.tables import load_schemas
from tests.rows import clickhouse_test_dsn, unique_database

SHAPE = Shape(weeks=10, groups=2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    ch = connect(clickhouse_test_dsn(tmp_path_factory.mktemp("chdb-scale") / "clickhouse"))
    yield ch
    ch.close()


def load_as_before(client: Client, database: str, bundles: list[Bundle], before: Path) -> None:
    """Unpartitioned tables, every row inserted as the worker emitted it, site_hourly recomputed."""
    migrate(client, database, directory=before)
    schemas = load_schemas(client, database)
    tables: dict[str, list[Any]] = {}
    for bundle in bundles:
        for table, rows in bundle.items():
            tables.setdefault(table, []).extend(rows)
    for table, rows in tables.items():
        prepared = schemas[table].to_columns(rows)
        assert not prepared.rejected, (table, prepared.rejected[:3])
        client.insert(table, prepared.columns, column_names=prepared.names, database=database,
                      column_type_names=prepared.types, column_oriented=True)
    journeys = tables["appointment_journeys"]
    site_hourly.recompute(client, site_hourly.buckets_of_rows(
        [r["site_id"] for r in journeys], [r["department"] for r in journeys],
        [r["scheduled_start"] for r in journeys]), database)


@pytest.fixture(scope="module")
def data_sets(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(partitioned, unpartitioned, the week written by the RowWriter) databases; the first two
    hold the same scaled journeys."""
    before = tmp_path_factory.mktemp("without-0005")
    for migration in discover():
        sql = migration.sql
        if migration.version == 5:  # of 0005 only the column later migrations use, not the repartitioning
            sql = split_statements(sql)[0]
            assert "ADD COLUMN IF NOT EXISTS is_deleted" in sql, sql
        (before / migration.path.name).write_text(sql)
    bundles = week_bundles()
    names = {kind: unique_database(f"scale_{kind}") for kind in ("week", "week_before", "now", "before")}
    try:
        seed_week(client, names["week"], bundles)
        load_as_before(client, names["week_before"], bundles, before)
        scale(client, names["week"], names["now"], SHAPE)
        scale(client, names["week_before"], names["before"], SHAPE, migrations=before)
        yield names["now"], names["before"], names["week"]
    finally:
        for name in names.values():
            client.command(f"DROP DATABASE IF EXISTS {name}")


def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with floats to 9 significant digits (sums add up in another order per run) and
    NaN as text, sorted: the copies of the week tie on every ORDER BY column, and ties
    come out in any order."""
    def value(v: Any) -> Any:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else float(f"{v:.9g}")
        return v
    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


def answers(client: Client, database: str, window: TimeRange, settings: dict[str, Any]) -> dict[str, Any]:
    client.database = database
    found: dict[str, Any] = {}
    selections: dict[str, Any] = {}
    for uid, dashboard, panel in panels():
        if uid not in selections:
            selections[uid] = all_selections(client, window, dashboard)
            found[f"{uid} variables"] = [(s.name, list(s.options)) for s in selections[uid]]
        result = client.query(panel_sql(panel, window, selections[uid]), settings=settings)
        found[f"{uid} / {panel['title']}"] = comparable([tuple(row) for row in result.result_rows])
    return found


def test_the_scaled_data_moved_journeys_across_the_month(client: Client, data_sets: tuple[str, str, str]) -> None:
    now, before, week = data_sets
    # The writer left tombstones in March for journeys that moved into April (and back).
    moved = client.query(f"SELECT count() FROM {week}.appointment_journeys WHERE is_deleted = 1").result_rows[0][0]
    assert moved > 0
    journeys = {db: client.query(f"SELECT count() FROM {db}.appointment_journeys FINAL").result_rows[0][0]
                for db in (now, before)}
    assert journeys[now] == journeys[before] > 40_000
    months = client.query(f"SELECT uniqExact(_partition_id) FROM {now}.appointment_journeys").result_rows[0][0]
    assert months >= 3


@pytest.mark.parametrize("span", ["24h", "90d", "all"])
def test_every_panel_answers_as_before_the_migration(
    client: Client, data_sets: tuple[str, str, str], span: str
) -> None:
    now, before, _ = data_sets
    last = ranges(client, now)
    window = {"24h": last.day, "90d": last.quarter,
              "all": TimeRange(last.day.end - timedelta(days=7 * SHAPE.weeks + 60), last.day.end)}[span]
    partitioned = answers(client, now, window, PANEL_SETTINGS)
    reference = answers(client, before, window, {})
    assert sum(bool(rows) for rows in partitioned.values()) > len(partitioned) // 2, "most panels have rows"
    differ = [name for name in reference if partitioned[name] != reference[name]]
    assert not differ, (f"{len(differ)} panels differ, e.g. {differ[0]}:"
                        f" {partitioned[differ[0]][:5]} != {reference[differ[0]][:5]}")


def test_the_grafana_profile_sets_what_the_report_sends() -> None:
    """The readonly profile forbids a query's own SETTINGS: the setting lives in the profile."""
    documents = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/base/clickhouse.yaml").read_text()))
    (installation,) = [d for d in documents if d and d.get("kind") == "ClickHouseInstallation"]
    profiles = installation["spec"]["configuration"]["profiles"]
    assert {name: int(profiles[f"readonly/{name}"]) for name in PANEL_SETTINGS} == PANEL_SETTINGS


def test_connection_issues_hold_the_connection_issue_events(client: Client, data_sets: tuple[str, str, str]) -> None:
    """``connection_issues`` (what "Connection issues by kind" reads) counts as the events do."""
    now, _, week = data_sets
    for database in (now, week):
        client.database = database
        copy = client.query("SELECT site_id, kind, role, count() FROM connection_issues FINAL"
                            " GROUP BY ALL ORDER BY ALL").result_rows
        events = client.query(
            "SELECT site_id, JSONExtractString(fields, 'kind'), JSONExtractString(fields, 'role'), count()"
            " FROM events FINAL WHERE event_type = 'connection.issue' GROUP BY ALL ORDER BY ALL").result_rows
        assert len(copy) > 3 and copy == events, database


def test_the_site_hourly_panel_counts_the_journeys(client: Client, data_sets: tuple[str, str, str]) -> None:
    """site_hourly, kept by the writer bucket by bucket, answers what the journeys say: over
    the whole data set, as many scheduled, arrived and completed appointments."""
    now, _, week = data_sets
    (panel,) = [p for uid, _, p in panels() if p["title"] == "Scheduled, arrived and completed per hour"]
    for database in (now, week):
        client.database = database
        first, last = client.query(
            "SELECT toStartOfHour(min(scheduled_start)), toStartOfHour(max(scheduled_start))"
            " FROM appointment_journeys FINAL").result_rows[0]
        window = TimeRange(first.replace(tzinfo=dt.UTC), last.replace(tzinfo=dt.UTC))
        selections = all_selections(client, window, next(d for uid, d, _ in panels() if uid == "journeys-operations"))
        rollup = client.query(panel_sql(panel, window, selections), settings=PANEL_SETTINGS).result_rows
        direct = client.query(
            "SELECT count(), countIf(arrived_at IS NOT NULL OR patient_joined_at IS NOT NULL),"
            " countIf(status = 'completed') FROM appointment_journeys FINAL WHERE scheduled_start IS NOT NULL"
        ).result_rows[0]
        assert len(rollup) > 10 and direct[0] > 2000
        assert tuple(sum(row[i] for row in rollup) for i in (1, 2, 3)) == tuple(direct), database


def test_the_variables_see_no_tombstone(client: Client, data_sets: tuple[str, str, str]) -> None:
    """The week itself (moves and tombstones): the variables, which read without FINAL, list
    exactly the sites, departments and providers of the live journeys."""
    _, _, week = data_sets
    client.database = week
    last = ranges(client, week)
    live = {column: [str(row[0]) for row in client.query(
        f"SELECT DISTINCT {column} FROM appointment_journeys FINAL WHERE {column} IS NOT NULL ORDER BY {column}"
    ).result_rows] for column in ("site_id", "department", "provider_id")}
    for _, dashboard, _ in panels():
        listed = {s.name: list(s.options) for s in all_selections(client, last.quarter, dashboard)}
        assert listed == {"site": live["site_id"], "department": live["department"], "provider": live["provider_id"]}
