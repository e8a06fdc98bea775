"""Month partitions and moving keys, on a real engine (chdb, or $CLICKHOUSE_URL).

The journey tables are partitioned by month (migration 0005) and dashboards merge FINAL
per partition (``do_not_merge_across_partitions_select_final = 1``). That is only right
if no key ever has two live rows in two partitions: the writer (sinks.placement) puts a
tombstone in the old month when a key moves, moves the core's tombstones to the month
of what they delete, and drops a stale copy that would land elsewhere. Every check
here reads both ways, per partition and merged across partitions, and wants one answer.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.tables import tombstone
from schemas.timestamps import DAY_MS, HOUR_MS, MINUTE_MS
from sinks.client import Client, connect
from sinks.migrate import discover, migrate
from sinks.rows import RowWriter
from tests.rows import clickhouse_backend, clickhouse_test_dsn, journey_row, stage_row, unique_database

JAN_31_22H = 1_769_896_800_000  # 2026-01-31T22:00:00Z
FEB_02_09H = JAN_31_22H + DAY_MS + 11 * HOUR_MS  # 2026-02-02T09:00:00Z
PER_PARTITION = "do_not_merge_across_partitions_select_final = 1"
MERGED = "do_not_merge_across_partitions_select_final = 0"


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-moves") / "clickhouse"


@pytest.fixture(params=[clickhouse_backend()])
def client(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[Client]:
    ch = connect(clickhouse_test_dsn(chdb_dir))
    yield ch
    ch.close()


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    name = unique_database("moves")
    migrate(client, name)
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")


def live(client: Client, database: str, table: str, columns: str, settings: str) -> list[tuple[Any, ...]]:
    rows = client.query(f"SELECT {columns} FROM {database}.{table} FINAL SETTINGS {settings}").result_rows
    return sorted(tuple(row) for row in rows)


def both_ways(client: Client, database: str, table: str, columns: str) -> list[tuple[Any, ...]]:
    """The live rows, the same read per partition and across partitions (else the test fails)."""
    per_partition = live(client, database, table, columns, PER_PARTITION)
    assert per_partition == live(client, database, table, columns, MERGED), "partitions disagree with the whole"
    return per_partition


def partitions(client: Client, database: str, table: str) -> list[tuple[str, int, int]]:
    """(partition, version, is_deleted) of every stored row, unmerged."""
    rows = client.query(f"SELECT _partition_id, version, is_deleted FROM {database}.{table}").result_rows
    return sorted((str(partition), int(version), int(deleted)) for partition, version, deleted in rows)


def test_a_reschedule_into_another_month_leaves_one_live_row(client: Client, database: str) -> None:
    writer = RowWriter(client, database)
    writer.write([{"appointment_journeys": [journey_row("A-1", 1, scheduled_start=JAN_31_22H)]}])
    writer.write([{"appointment_journeys": [journey_row("A-1", 2, scheduled_start=FEB_02_09H, reschedule_count=1)]}])

    assert both_ways(client, database, "appointment_journeys", "appointment_id, version, reschedule_count") == [
        ("A-1", 2, 1)]
    # The old month keeps its row and the writer's tombstone of it; the new month the live row.
    assert partitions(client, database, "appointment_journeys") == [("202601", 1, 0), ("202601", 1, 1),
                                                                    ("202602", 2, 0)]
    # The tombstone names the site, department and provider, so the dashboards' variables
    # (DISTINCT, without FINAL) list no empty value.
    assert client.query(f"SELECT DISTINCT site_id, department, provider_id FROM {database}.appointment_journeys"
                        ).result_rows == [("north", "cardiology", "dr-7")]
    # site_hourly (partitioned by month too) follows: the January hour is empty, February's has it.
    assert both_ways(client, database, "site_hourly", "toUnixTimestamp(hour) * 1000, appointments") == [
        (JAN_31_22H, 0), (FEB_02_09H, 1)]

    # Back to January: February now holds a tombstone, January a newer live row.
    writer.write([{"appointment_journeys": [journey_row("A-1", 3, scheduled_start=JAN_31_22H, reschedule_count=2)]}])
    assert both_ways(client, database, "appointment_journeys", "appointment_id, version, reschedule_count") == [
        ("A-1", 3, 2)]
    assert both_ways(client, database, "site_hourly", "toUnixTimestamp(hour) * 1000, appointments") == [
        (JAN_31_22H, 1), (FEB_02_09H, 0)]


def test_a_redelivered_older_batch_does_not_come_back_in_its_old_month(client: Client, database: str) -> None:
    writer = RowWriter(client, database)
    first = {"appointment_journeys": [journey_row("A-1", 1, scheduled_start=JAN_31_22H)]}
    writer.write([first])
    writer.write([{"appointment_journeys": [journey_row("A-1", 2, scheduled_start=FEB_02_09H)]}])
    writer.write([first])  # a redelivery: the stored version 2 is newer and elsewhere

    # Not inserted: in January it would be live again beside the tombstone of version 1.
    assert partitions(client, database, "appointment_journeys") == [("202601", 1, 0), ("202601", 1, 1),
                                                                    ("202602", 2, 0)]
    assert both_ways(client, database, "appointment_journeys", "appointment_id, version") == [("A-1", 2)]


def test_versions_of_one_key_in_one_batch_keep_the_newest(client: Client, database: str) -> None:
    writer = RowWriter(client, database)
    writer.write([{"appointment_journeys": [journey_row("A-1", 1, scheduled_start=FEB_02_09H)]}])
    counts = writer.write([
        {"appointment_journeys": [journey_row("A-1", 2, scheduled_start=JAN_31_22H)]},
        {"appointment_journeys": [journey_row("A-1", 3, scheduled_start=FEB_02_09H + DAY_MS)]},
    ])

    assert counts["appointment_journeys"] == 2  # both are the batch's rows; version 2 is replaced by 3 anyway
    assert both_ways(client, database, "appointment_journeys", "appointment_id, version") == [("A-1", 3)]
    assert partitions(client, database, "appointment_journeys") == [("202602", 1, 0), ("202602", 3, 0)]


def test_a_late_fact_and_a_tombstone_of_a_stage_interval(client: Client, database: str) -> None:
    writer = RowWriter(client, database)
    feb_1 = JAN_31_22H + 2 * HOUR_MS + 5 * MINUTE_MS  # 00:05 on 1 February
    writer.write([{"stage_intervals": [stage_row("A-1", "lobby", 1, started_at=feb_1, ended_at=feb_1 + 20 * MINUTE_MS)]}])
    # A check-in ten minutes earlier comes in late: the lobby wait now starts in January.
    writer.write([{"stage_intervals": [stage_row("A-1", "lobby", 2, started_at=feb_1 - 10 * MINUTE_MS,
                                                 ended_at=feb_1 + 20 * MINUTE_MS, minutes=30.0)]}])
    assert both_ways(client, database, "stage_intervals", "stage, version, minutes") == [("lobby", 2, 30.0)]

    # The core deletes the key with a tombstone of empty times (1970): it lands beside the live row.
    gone = tombstone("stage_intervals", 3, appointment_id="A-1", stage="lobby", site_id="north",
                     department="cardiology", provider_id="dr-7", modality="in_person")
    writer.write([{"stage_intervals": [gone]}])
    assert both_ways(client, database, "stage_intervals", "stage, version") == []
    assert partitions(client, database, "stage_intervals") == [("202601", 2, 0), ("202601", 3, 1),
                                                               ("202602", 1, 0), ("202602", 1, 1)]
    # A tombstone of a key with nothing live is not written at all (no junk partition of 1970).
    writer.write([{"stage_intervals": [tombstone("stage_intervals", 4, appointment_id="A-2", stage="room")]}])
    assert "197001" not in {p for p, _, _ in partitions(client, database, "stage_intervals")}


def test_random_moves_in_any_batching_leave_the_newest_row_live(client: Client, database: str) -> None:
    """Appointments moving between three months, stage intervals appearing, moving and
    disappearing, written in random batches with random redeliveries of earlier batches."""
    rng = random.Random(17)
    months = [JAN_31_22H - 20 * DAY_MS, JAN_31_22H, FEB_02_09H + 30 * DAY_MS]
    newest: dict[str, tuple[int, int]] = {}  # appointment -> (version, scheduled_start) last emitted
    lobby: dict[str, int | None] = {}  # appointment -> lobby start of its newest version, None: deleted
    sent: list[dict[str, list[dict[str, Any]]]] = []
    writer = RowWriter(client, database)
    for round_ in range(12):
        bundles = []
        for index in rng.sample(range(40), 15):
            appointment = f"A-{index}"
            version = newest.get(appointment, (0, 0))[0] + 1
            start = rng.choice(months) + rng.randrange(-3, 3) * HOUR_MS
            bundle: dict[str, list[dict[str, Any]]] = {
                "appointment_journeys": [journey_row(appointment, version, scheduled_start=start)]}
            if rng.random() < 0.7:
                lobby_start = start + rng.randrange(-30, 30) * MINUTE_MS
                bundle["stage_intervals"] = [stage_row(appointment, "lobby", version, started_at=lobby_start,
                                                       ended_at=lobby_start + 10 * MINUTE_MS)]
                lobby[appointment] = lobby_start
            elif lobby.get(appointment) is not None:
                bundle["stage_intervals"] = [tombstone("stage_intervals", version, appointment_id=appointment,
                                                       stage="lobby")]
                lobby[appointment] = None
            newest[appointment] = (version, start)
            bundles.append(bundle)
        if sent and rng.random() < 0.5:
            bundles += rng.sample(sent, min(len(sent), 5))  # a redelivery of earlier messages
        sent += bundles
        writer.write(bundles)

        journeys = both_ways(client, database, "appointment_journeys",
                             "appointment_id, version, toUnixTimestamp64Milli(scheduled_start)")
        assert journeys == sorted((a, v, s) for a, (v, s) in newest.items()), f"round {round_}"
        lobbies = both_ways(client, database, "stage_intervals", "appointment_id, toUnixTimestamp64Milli(started_at)")
        assert lobbies == sorted((a, s) for a, s in lobby.items() if s is not None), f"round {round_}"
    assert not writer.rejected


def test_the_migration_carries_the_live_rows_over(client: Client, tmp_path: Path) -> None:
    """Tables of before 0005 with several versions of a key in two months and a deleted
    key: after 0005 the same rows are live, once, per partition."""
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in discover():
        if migration.version < 5:
            (before / migration.path.name).write_text(migration.sql)
    name = unique_database("moves")
    try:
        migrate(client, name, directory=before)
        client.command(
            f"INSERT INTO {name}.appointment_journeys (appointment_id, version, site_id, department, status,"
            " scheduled_start, first_event_at, last_event_at) VALUES"
            " ('A-1', 1, 'north', 'cardiology', 'scheduled', '2026-01-31 22:00:00', '2026-01-02 00:00:00', now()),"
            " ('A-1', 2, 'north', 'cardiology', 'scheduled', '2026-02-02 09:00:00', '2026-01-02 00:00:00', now()),"
            " ('A-2', 1, 'north', 'cardiology', 'completed', NULL, '2026-01-03 00:00:00', now())")
        client.command(
            f"INSERT INTO {name}.stage_intervals (appointment_id, stage, version, is_deleted, site_id, department,"
            " started_at) VALUES ('A-1', 'lobby', 1, 0, 'north', 'cardiology', '2026-01-31 23:55:00'),"
            " ('A-1', 'lobby', 2, 0, 'north', 'cardiology', '2026-02-01 00:05:00'),"
            " ('A-1', 'room', 1, 0, 'north', 'cardiology', '2026-01-31 23:58:00'),"
            " ('A-1', 'room', 2, 1, 'north', 'cardiology', '1970-01-01 00:00:00')")
        assert [m.version for m in migrate(client, name)] == [5, 6, 7]

        assert both_ways(client, name, "appointment_journeys", "appointment_id, version, _partition_id") == [
            ("A-1", 2, "202602"), ("A-2", 1, "202601")]
        assert both_ways(client, name, "stage_intervals", "stage, version, _partition_id") == [("lobby", 2, "202602")]
        assert partitions(client, name, "stage_intervals") == [("202602", 2, 0)]  # only what was live
        # The writer knows where the carried rows are: a move back to January leaves one live row.
        RowWriter(client, name).write([{"appointment_journeys": [journey_row("A-1", 3, scheduled_start=JAN_31_22H)]}])
        assert both_ways(client, name, "appointment_journeys", "appointment_id, version, _partition_id") == [
            ("A-1", 3, "202601"), ("A-2", 1, "202601")]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")


REPLICATED_ENGINE_ENV = "JOURNEYS_TEST_CLICKHOUSE_DATABASE_ENGINE"


@pytest.mark.skipif(not os.environ.get(REPLICATED_ENGINE_ENV) or clickhouse_backend() != "server",
                    reason=f"needs $CLICKHOUSE_URL (a cluster node) and ${REPLICATED_ENGINE_ENV}, e.g."
                           " Replicated('/clickhouse/databases/{database}', '{shard}', '{replica}')")
def test_the_migrations_on_a_replicated_database(client: Client) -> None:
    """What prod runs (deploy/kubernetes/overlays/prod): every migration into a database of
    the Replicated engine, whose MergeTree tables then replicate; a move across months
    still leaves one live row. ``{database}`` in the engine is replaced by the database."""
    name = unique_database("replicated")
    engine = os.environ[REPLICATED_ENGINE_ENV].replace("{database}", name)
    try:
        assert [m.version for m in migrate(client, name, database_engine=engine)] == [
            m.version for m in discover()]
        engines = dict(client.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree'",
            parameters={"db": name}).result_rows)
        assert engines and all(engine.startswith("Replicated") for engine in engines.values()), engines
        writer = RowWriter(client, name)
        writer.write([{"appointment_journeys": [journey_row("A-1", 1, scheduled_start=JAN_31_22H)]}])
        writer.write([{"appointment_journeys": [journey_row("A-1", 2, scheduled_start=FEB_02_09H)]}])
        assert both_ways(client, name, "appointment_journeys", "appointment_id, version") == [("A-1", 2)]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
