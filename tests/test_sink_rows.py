"""RowWriter, migrations, site_hourly and markers on a real ClickHouse engine (no Kafka).

By default the engine is chdb (in process, one data directory for the session, one
database per test). To run the same tests against a ClickHouse server instead::

    CLICKHOUSE_URL=http://default:@127.0.0.1:8123 pytest tests/test_sink_rows.py tests/test_sink_writer.py

Every test creates its own database there and drops it afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.timestamps import DAY_MS, HOUR_MS, MINUTE_MS
from sinks.client import Client, DsnError, connect, parse_dsn
from sinks.columns import BadValue, converter_for
from sinks.markers import marker_rows
from sinks.migrate import MigrationError, discover, migrate, split_statements
from sinks.readonly import ReadOnlyError, check_read_only
from sinks.rows import RowWriter
from streams.markers import wait_for_marker
from tests.rows import (
    T0,
    clickhouse_backend,
    clickhouse_test_dsn,
    deadletter_row,
    event_row,
    friction_row,
    journey_row,
    marker_row,
    patient_row,
    patient_visit_row,
    queue_wait_row,
    sample_bundle,
    stage_row,
    telehealth_journey_row,
    unique_database,
)


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-rows") / "clickhouse"


@pytest.fixture(params=[clickhouse_backend()])
def dsn(request: pytest.FixtureRequest, chdb_dir: Path) -> str:
    """The engine under test; the test id says which: ``[chdb]`` or ``[server]`` ($CLICKHOUSE_URL)."""
    return clickhouse_test_dsn(chdb_dir)


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    # Function scope: chdb allows one data directory per process, and other test
    # modules may open theirs; closing every client releases the engine.
    ch = connect(dsn)
    yield ch
    ch.close()


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    name = unique_database()
    migrate(client, name)
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def writer(client: Client, database: str) -> RowWriter:
    return RowWriter(client, database)


def read(client: Client, database: str, table: str, where: str = "1", final: bool = True) -> list[dict[str, Any]]:
    """Rows as dicts, timestamps back to epoch ms (the wire form), sorted for comparison."""
    result = client.query(f"SELECT * FROM {database}.{table} {'FINAL' if final else ''} WHERE {where}")
    rows = [dict(zip(result.column_names, map(_wire, row), strict=True)) for row in result.result_rows]
    return sorted(rows, key=repr)


def _wire(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # chdb returns naive UTC
        return round(aware.timestamp() * 1000)
    if isinstance(value, tuple):
        return list(value)
    return value


def count(client: Client, database: str, table: str, final: bool = True) -> int:
    return int(client.query(f"SELECT count() FROM {database}.{table} {'FINAL' if final else ''}").result_rows[0][0])


# -- DSN, converters, SQL splitting (no engine) ------------------------------------------


def test_parse_dsn_forms() -> None:
    assert parse_dsn("chdb:///var/lib/ch").path == Path("/var/lib/ch")
    parsed = parse_dsn("https://bob:p%40ss@ch.example:8443/analytics?connect_timeout=3")
    assert (parsed.kind, parsed.host, parsed.port, parsed.username, parsed.password, parsed.database) == (
        "http",
        "ch.example",
        8443,
        "bob",
        "p@ss",
        "analytics",
    )
    assert parsed.options == {"connect_timeout": "3"}
    for bad in ("clickhouse://h:9000", "chdb://", "http:///nohost", "/just/a/path"):
        with pytest.raises(DsnError):
            parse_dsn(bad)


def test_converters_map_wire_values() -> None:
    assert converter_for("DateTime64(3, 'UTC')")([T0]) == [T0]
    assert converter_for("DateTime64(6, 'UTC')")([T0]) == [T0 * 1000]
    assert converter_for("DateTime('UTC')")([T0 + 999]) == [T0 // 1000]
    assert converter_for("Nullable(DateTime64(3, 'UTC'))")([None, float(T0), "2026-01-05T11:00:00+01:00"]) == [
        None,
        T0,
        T0,
    ]
    assert converter_for("Map(String, UInt32)")([{"lab": 2.0}]) == [{"lab": 2}]
    assert converter_for("Array(LowCardinality(String))")([["a", "b"], []]) == [["a", "b"], []]
    assert converter_for("String")([{"b": 1, "a": 2}]) == ['{"a":2,"b":1}']
    assert converter_for("UInt8")([True, 0]) == [1, 0]
    cases: list[tuple[str, list[Any]]] = [
        ("UInt32", [1, -1]),
        ("UInt8", [1, 256]),
        ("String", ["a", 5]),
        ("Float64", [1.0, "2"]),
        ("DateTime64(3, 'UTC')", [T0, None]),
        ("DateTime64(3, 'UTC')", [T0, "2026-01-05T10:00:00"]),
    ]
    for type_text, bad in cases:
        with pytest.raises(BadValue) as error:
            converter_for(type_text)(bad)
        assert error.value.row == 1


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = "CREATE TABLE t (a String COMMENT 'x; y') ENGINE = Memory; -- c;\n/* d; */ SELECT 'it''s;'"
    assert split_statements(sql) == [
        "CREATE TABLE t (a String COMMENT 'x; y') ENGINE = Memory",
        "-- c;\n/* d; */ SELECT 'it''s;'",
    ]


def test_read_only_check() -> None:
    for ok in (
        "SELECT 1",
        " with x as (select 1) select * from x",
        "SHOW TABLES",
        "DESCRIBE t",
        "EXPLAIN SELECT 1",
        "(SELECT 1)",
        "/* hi */ select 1;",
    ):
        check_read_only(ok)
    for bad in (
        "INSERT INTO t VALUES (1)",
        "DROP TABLE t",
        "SELECT 1; DROP TABLE t",
        "",
        "OPTIMIZE TABLE t FINAL",
        "SET readonly = 0",
        "ALTER TABLE t DELETE WHERE 1",
    ):
        with pytest.raises(ReadOnlyError):
            check_read_only(bad)


# -- migrations -------------------------------------------------------------------------


def test_migration_creates_the_database_with_the_configured_engine(client: Client) -> None:
    # Production asks for Replicated(...) (Keeper needed); the clause is the same for any engine.
    name = unique_database()
    try:
        migrate(client, name, database_engine="Atomic")
        engine = client.command(f"SELECT engine FROM system.databases WHERE name = '{name}'")
        assert engine == "Atomic"
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")


def test_migrations_are_idempotent(client: Client) -> None:
    name = unique_database()
    try:
        applied = migrate(client, name)
        assert [m.version for m in applied] == [m.version for m in discover()]
        assert migrate(client, name) == []
        assert migrate(client, name) == []
        versions = client.query(f"SELECT version FROM {name}.schema_migrations FINAL ORDER BY version").result_rows
        assert [v for (v,) in versions] == [m.version for m in discover()]
        tables = {t for (t,) in client.query(f"SHOW TABLES FROM {name}").result_rows}
        assert {
            "events",
            "deadletters",
            "appointment_journeys",
            "stage_intervals",
            "queue_waits",
            "friction_events",
            "patient_journeys",
            "patient_visits",
            "site_hourly",
            "pipeline_markers",
            "schema_migrations",
        } <= tables
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")


def test_new_migration_file_is_applied_once(client: Client, tmp_path: Path) -> None:
    for migration in discover():
        (tmp_path / migration.path.name).write_text(migration.sql)
    name = unique_database()
    try:
        migrate(client, name, tmp_path)
        (tmp_path / "0099_extra.sql").write_text(
            "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS note String DEFAULT ''"
        )
        assert [m.version for m in migrate(client, name, tmp_path)] == [99]
        assert migrate(client, name, tmp_path) == []
        (tmp_path / "0100_bad.sql").write_text("CREATE TABLE {db}.broken (")
        with pytest.raises(MigrationError, match=r"0100_bad\.sql, statement 1"):
            migrate(client, name, tmp_path)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")


def test_refuses_database_names_that_need_quoting(client: Client) -> None:
    with pytest.raises(MigrationError):
        migrate(client, "bad-name; DROP")


# -- round trip -------------------------------------------------------------------------


def every_table_bundle() -> dict[str, list[dict[str, Any]]]:
    bundle = sample_bundle("A-1")
    bundle["appointment_journeys"].append(telehealth_journey_row("T-1"))
    bundle["appointment_journeys"].append(
        journey_row(
            "C-1",
            status="late_cancelled",
            late_cancelled=1,
            cancelled_by="patient",
            cancelled_at=T0 - 2 * HOUR_MS,
            arrived_at=None,
            checked_in_at=None,
            roomed_at=None,
            provider_started_at=None,
            checked_out_at=None,
            lobby_wait_min=None,
            room_wait_min=None,
            cycle_time_min=None,
            friction_rules=[],
            queue_wait_min={},
            queue_abandoned={},
            friction_count=1,
        )
    )
    bundle["events"].append(event_row("e-2", provider_id=None, fields="{}"))
    bundle["deadletters"] = [deadletter_row(7), deadletter_row(8, reason="bad_json", detail="value")]
    bundle["patient_journeys"] = [
        patient_row(),
        patient_row(
            "6a" * 32, first_seen_at=None, last_completed_visit_at=None, days_since_previous_completed_visit=None
        ),
    ]
    bundle["patient_visits"] = [
        patient_visit_row("A-1"),
        patient_visit_row(
            "A-0",
            visit_at=T0 - 45 * DAY_MS,
            had_friction=0,
            friction_rules=[],
            returned_within_90d=1,
            days_to_next_visit=45.0,
            days_to_return=45.0,
        ),
    ]
    bundle["pipeline_markers"] = [marker_row("m-rt", 0, output_partition=3, written_at=T0)]
    return bundle


def test_round_trip_of_every_table(client: Client, database: str, writer: RowWriter) -> None:
    bundle = every_table_bundle()
    counts = writer.write([bundle])
    assert counts == {table: len(rows) for table, rows in bundle.items()} | {"site_hourly": 1}
    assert not writer.rejected
    for table, rows in bundle.items():
        assert read(client, database, table) == sorted(rows, key=repr), table


def test_fills_arrival_times_and_offline_marker_partition(client: Client, database: str, writer: RowWriter) -> None:
    row = deadletter_row(9)
    del row["received_at"]
    writer.write([{"deadletters": [row], "pipeline_markers": [marker_row("m-fill")]}])
    (stored,) = read(client, database, "deadletters")
    assert abs(stored["received_at"] - dt.datetime.now(dt.UTC).timestamp() * 1000) < 60_000
    (marker,) = read(client, database, "pipeline_markers")
    assert marker["output_partition"] == 0 and marker["written_at"] > T0


def test_same_bundles_twice_leave_the_same_rows(client: Client, database: str, writer: RowWriter) -> None:
    bundles = [sample_bundle(f"A-{i}") for i in range(20)]
    writer.write(bundles)
    first = {table: read(client, database, table) for table in bundles[0]} | {"site_hourly": _hourly(client, database)}
    writer.write(bundles)  # a redelivered batch
    writer.write(bundles[5:12])  # and a partial one
    again = {table: read(client, database, table) for table in bundles[0]} | {"site_hourly": _hourly(client, database)}
    assert again == first
    assert count(client, database, "appointment_journeys") == 20
    assert count(client, database, "appointment_journeys", final=False) > 20  # physically there, FINAL dedupes


def test_latest_version_wins_in_any_arrival_order(client: Client, database: str, writer: RowWriter) -> None:
    writer.write([{"appointment_journeys": [journey_row("A-1", 3, status="completed")]}])
    writer.write(
        [
            {
                "appointment_journeys": [
                    journey_row("A-1", 1, status="scheduled"),
                    journey_row("A-1", 2, status="in_progress"),
                ]
            }
        ]
    )
    (row,) = read(client, database, "appointment_journeys")
    assert (row["version"], row["status"]) == (3, "completed")
    writer.write([{"appointment_journeys": [journey_row("A-1", 4, status="no_show", no_show=1)]}])
    (row,) = read(client, database, "appointment_journeys")
    assert (row["version"], row["status"]) == (4, "no_show")


def test_tombstones_remove_rows(client: Client, database: str, writer: RowWriter) -> None:
    writer.write([sample_bundle("A-1", 1)])
    # version 2: the room stage and the lab wait are retracted, the lobby hit too
    writer.write(
        [
            {
                "stage_intervals": [stage_row("A-1", "room", 2, is_deleted=1)],
                "queue_waits": [queue_wait_row("A-1", "lab", 2, is_deleted=1)],
                "friction_events": [friction_row("A-1", "lobby_wait", 2, is_deleted=1)],
                "patient_visits": [patient_visit_row("A-1", 2, is_deleted=1)],
            }
        ]
    )
    assert [r["stage"] for r in read(client, database, "stage_intervals")] == ["lobby"]
    assert read(client, database, "queue_waits") == []
    assert [r["rule"] for r in read(client, database, "friction_events")] == ["provider_start_delay"]
    assert read(client, database, "patient_visits") == []
    # an older version arriving late does not resurrect a deleted row
    writer.write([{"stage_intervals": [stage_row("A-1", "room", 1)]}])
    assert [r["stage"] for r in read(client, database, "stage_intervals")] == ["lobby"]
    # a newer live version brings it back
    writer.write([{"stage_intervals": [stage_row("A-1", "room", 3, minutes=7.0)]}])
    assert {r["stage"]: r["minutes"] for r in read(client, database, "stage_intervals")} == {"lobby": 22.0, "room": 7.0}


def test_bad_rows_are_rejected_alone(client: Client, database: str, writer: RowWriter) -> None:
    missing_version = journey_row("A-2")
    del missing_version["version"]
    counts = writer.write(
        [
            {
                "appointment_journeys": [
                    journey_row("A-1"),
                    missing_version,
                    journey_row("A-3", reschedule_count=-1),
                    journey_row("A-4", scheduled_start="tomorrow"),
                    journey_row("A-5"),
                ],
                "no_such_table": [{"x": 1}],
                "site_hourly": [{"site_id": "forged"}],
                "events": "not a list",  # type: ignore[dict-item]
            }
        ]
    )
    assert counts["appointment_journeys"] == 2
    assert {r["appointment_id"] for r in read(client, database, "appointment_journeys")} == {"A-1", "A-5"}
    reasons = {table for table, _ in writer.rejected}
    assert reasons == {"appointment_journeys", "no_such_table", "site_hourly", "events"}
    assert sum(writer.rejected.values()) == 3 + 1 + 1 + 1
    assert "forged" not in {r["site_id"] for r in read(client, database, "site_hourly")}


def test_unknown_keys_are_ignored(client: Client, database: str, writer: RowWriter) -> None:
    writer.write([{"deadletters": [deadletter_row(1) | {"added_in_a_later_version": 1}]}])
    assert count(client, database, "deadletters") == 1


# -- site_hourly ------------------------------------------------------------------------


def _hourly(client: Client, database: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    rows = read(client, database, "site_hourly")
    return {
        (r["site_id"], r["department"], r["hour"]): {k: v for k, v in r.items() if k != "computed_at"} for r in rows
    }


def test_site_hourly_aggregates(client: Client, database: str, writer: RowWriter) -> None:
    writer.write(
        [
            {
                "appointment_journeys": [
                    journey_row("A-1", lobby_wait_min=10.0, room_wait_min=4.0, cycle_time_min=50.0),
                    journey_row(
                        "A-2",
                        scheduled_start=T0 + 30 * MINUTE_MS,
                        lobby_wait_min=20.0,
                        room_wait_min=None,
                        cycle_time_min=70.0,
                    ),
                    journey_row(
                        "A-3",
                        scheduled_start=T0 + 59 * MINUTE_MS,
                        lobby_wait_min=40.0,
                        cycle_time_min=None,
                        checked_out_at=None,
                        status="in_progress",
                        friction_count=0,
                    ),
                    journey_row(
                        "A-4",
                        status="no_show",
                        no_show=1,
                        arrived_at=None,
                        checked_in_at=None,
                        roomed_at=None,
                        provider_started_at=None,
                        checked_out_at=None,
                        lobby_wait_min=None,
                        room_wait_min=None,
                        provider_start_delay_min=None,
                        cycle_time_min=None,
                        friction_count=1,
                    ),
                    journey_row(
                        "A-5",
                        status="late_cancelled",
                        late_cancelled=1,
                        arrived_at=None,
                        lobby_wait_min=None,
                        room_wait_min=None,
                        provider_start_delay_min=None,
                        cycle_time_min=None,
                        friction_count=1,
                    ),
                    journey_row(
                        "A-6",
                        status="left_without_being_seen",
                        left_without_being_seen_at=T0 + 40 * MINUTE_MS,
                        roomed_at=None,
                        lobby_wait_min=None,
                        room_wait_min=None,
                        provider_start_delay_min=None,
                        cycle_time_min=None,
                        checked_out_at=None,
                    ),
                    telehealth_journey_row("T-1", scheduled_start=T0 + 5 * MINUTE_MS),
                    telehealth_journey_row(
                        "T-2",
                        scheduled_start=T0 + 6 * MINUTE_MS,
                        telehealth_connected=0,
                        telehealth_abandoned=1,
                        provider_joined_at=None,
                        virtual_wait_min=None,
                        status="in_progress",
                    ),
                    journey_row("B-1", department="dermatology"),
                    journey_row("N-1", scheduled_start=None, status="scheduled"),  # no hour: not counted anywhere
                ]
            }
        ]
    )
    hourly = _hourly(client, database)
    assert set(hourly) == {("north", "cardiology", T0), ("north", "dermatology", T0)}
    cardio = hourly[("north", "cardiology", T0)]
    assert cardio == {
        "site_id": "north",
        "department": "cardiology",
        "hour": T0,
        "appointments": 8,
        "in_person": 6,
        "telehealth": 2,
        "arrivals": 6,  # A-1,2,3,6 arrived; T-1,T-2 joined; A-4 no, A-5 arrived_at=None
        "completed": 3,  # T-1
        "no_shows": 1,
        "cancellations": 1,
        "late_cancellations": 1,
        "left_without_being_seen": 1,
        "lobby_wait_n": 3,
        "lobby_wait_sum_min": 70.0,
        "lobby_wait_p50_min": 20.0,
        "lobby_wait_p90_min": 36.0,
        "room_wait_n": 2,
        "room_wait_sum_min": 10.0,
        "room_wait_p50_min": 5.0,
        "room_wait_p90_min": 5.8,
        "provider_delay_n": 3,
        "provider_delay_sum_min": 63.0,
        "cycle_time_n": 2,
        "cycle_time_sum_min": 120.0,
        "cycle_time_p50_min": 60.0,
        "telehealth_connected": 1,
        "telehealth_abandoned": 1,
        "friction_count": 2 + 2 + 0 + 1 + 1 + 2 + 1 + 1,
    }
    assert cardio["room_wait_p90_min"] == pytest.approx(5.8)


def test_site_hourly_follows_a_reschedule(client: Client, database: str, writer: RowWriter) -> None:
    writer.write([{"appointment_journeys": [journey_row("A-1"), journey_row("A-2")]}])
    assert _hourly(client, database)[("north", "cardiology", T0)]["appointments"] == 2
    # A-2 moves to 14:00; A-1 moves to another site entirely
    writer.write(
        [
            {
                "appointment_journeys": [
                    journey_row("A-2", 2, scheduled_start=T0 + 4 * HOUR_MS, reschedule_count=1),
                    journey_row("A-1", 2, site_id="south"),
                ]
            }
        ]
    )
    hourly = _hourly(client, database)
    assert hourly[("north", "cardiology", T0)]["appointments"] == 0  # emptied, not left stale
    assert hourly[("north", "cardiology", T0)]["lobby_wait_p50_min"] is None
    assert hourly[("north", "cardiology", T0 + 4 * HOUR_MS)]["appointments"] == 1
    assert hourly[("south", "cardiology", T0)]["appointments"] == 1
    # a stale redelivery of version 1 does not move it back
    writer.write([{"appointment_journeys": [journey_row("A-2", 1)]}])
    hourly = _hourly(client, database)
    assert hourly[("north", "cardiology", T0)]["appointments"] == 0
    assert hourly[("north", "cardiology", T0 + 4 * HOUR_MS)]["appointments"] == 1
    assert count(client, database, "site_hourly") == 3


def test_site_hourly_equals_a_full_recompute(client: Client, database: str, writer: RowWriter) -> None:
    # Many small batches with reschedules vs the aggregate of the final journeys.
    for batch in range(6):
        rows = [
            journey_row(
                f"A-{i}",
                batch + 1,
                scheduled_start=T0 + ((i * 7 + batch * 3) % 9) * HOUR_MS,
                site_id=f"s{(i + batch) % 2}",
                lobby_wait_min=float(i % 11),
            )
            for i in range(batch * 5, batch * 5 + 40)
        ]
        writer.write([{"appointment_journeys": rows}])
    stored = {k: v["appointments"] for k, v in _hourly(client, database).items() if v["appointments"]}
    expected = client.query(
        f"SELECT site_id, department, toUnixTimestamp(toStartOfHour(assumeNotNull(scheduled_start))) * 1000, count()"
        f" FROM {database}.appointment_journeys FINAL GROUP BY 1, 2, 3"
    ).result_rows
    assert stored == {(s, d, h): n for s, d, h, n in expected}


# -- markers ----------------------------------------------------------------------------


def test_markers_are_written_after_the_rows(client: Client, database: str, writer: RowWriter) -> None:
    bundles = [
        sample_bundle("A-1"),
        {"pipeline_markers": [marker_row("m-1", p, output_partition=p) for p in range(4)]},
        sample_bundle("A-2"),
    ]
    order: list[str] = []
    original = client.insert

    def spy(table: str, *args: Any, **kwargs: Any) -> Any:
        order.append(table)
        return original(table, *args, **kwargs)

    client.insert = spy  # type: ignore[method-assign,assignment]
    try:
        writer.write(bundles)
    finally:
        client.insert = original  # type: ignore[method-assign]
    assert order[-1] == "pipeline_markers" and order.count("pipeline_markers") == 1
    assert wait_for_marker(lambda: marker_rows(client, database, "m-1"), 4, timeout=5) == 4
    writer.write([bundles[1]])  # a redelivered marker does not count twice
    assert marker_rows(client, database, "m-1") == 4
    with pytest.raises(TimeoutError, match="4/5"):
        wait_for_marker(lambda: marker_rows(client, database, "m-1"), 5, timeout=0.3)
    assert marker_rows(client, "db_that_does_not_exist", "m-1") == 0


# -- journeys query / db migrate ---------------------------------------------------------


def test_query_and_migrate_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    dsn = clickhouse_test_dsn(tmp_path / "ch")
    name = unique_database()
    monkeypatch.setenv("JOURNEYS_CLICKHOUSE_DSN", dsn)
    monkeypatch.setenv("JOURNEYS_CLICKHOUSE_DATABASE", name)
    monkeypatch.setenv("JOURNEYS_LOG_FORMAT", "console")

    def journeys(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    try:
        code, out, err = journeys("db", "migrate")
        assert code == 0 and "applied 0001_initial.sql" in out, err
        assert "up to date" in journeys("db", "migrate")[1]
        ch = connect(dsn)
        try:
            RowWriter(ch, name).write(
                [{"appointment_journeys": [journey_row("A-1"), journey_row("A-2", status="no_show")]}]
            )
        finally:
            ch.close()
        code, out, err = journeys(
            "query", "SELECT status, count() AS n FROM appointment_journeys FINAL GROUP BY status ORDER BY status"
        )
        assert code == 0, err
        assert out.splitlines() == ["status    | n", "----------+--", "completed | 1", "no_show   | 1", "(2 rows)"]
        code, out, _ = journeys(
            "query", "--format", "csv", "SELECT appointment_id FROM appointment_journeys FINAL ORDER BY 1"
        )
        assert out == '"appointment_id"\n"A-1"\n"A-2"\n'
        code, out, _ = journeys("query", "--format", "json", "SELECT count() AS n FROM appointment_journeys")
        assert out.strip() in ('{"n":2}', '{"n":"2"}')
        code, _, err = journeys("query", "DROP TABLE appointment_journeys")
        assert code == 2 and "only SELECT" in err
        # readonly = 1 cannot be lifted from inside the statement
        code, _, err = journeys("query", "SELECT 1 SETTINGS readonly = 0")
        assert code == 1 and "readonly" in err.lower()
        code, _, err = journeys("query", "SELECT * FROM no_such_table")
        assert code == 1 and "no_such_table" in err
    finally:
        ch = connect(dsn)
        ch.command(f"DROP DATABASE IF EXISTS {name}")
        ch.close()
