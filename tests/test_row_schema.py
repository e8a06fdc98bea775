"""The row schema (``schemas.tables``) is the one truth: the migrations create exactly its
columns, and every row the journey core emits has exactly its columns (less those the
writer fills)."""

from __future__ import annotations

import datetime as dt

import pytest

from journey.friction import load_rules
from journey.metrics import JourneyPolicy
from journey.state import JourneyState
from runtime.config import Settings
from schemas.tables import TABLES
from simulator import SimulationConfig, simulate
from sinks.client import connect
from sinks.migrate import migrate
from sinks.tables import NOW_FILLED

# Columns only the writer sets (sinks.tables.ADDED_LATER fills them in the core's rows).
WRITERS_OWN = {"appointment_journeys": {"is_deleted"}}
from streams.assemble import offline_pipeline


def test_the_migrations_create_exactly_the_schema(clickhouse_dsn: str, fresh_database: str) -> None:
    client = connect(clickhouse_dsn)
    try:
        migrate(client, fresh_database)
        result = client.query(
            "SELECT table, groupArray(name) FROM (SELECT table, name FROM system.columns "
            "WHERE database = {db:String} ORDER BY table, position) GROUP BY table", parameters={"db": fresh_database})
        migrated = {table: tuple(names) for table, names in result.result_rows if table in TABLES}
        partitions = {str(name): str(key) for name, key in client.query(
            "SELECT name, partition_key FROM system.tables WHERE database = {db:String}",
            parameters={"db": fresh_database}).result_rows}
        client.command(f"DROP DATABASE IF EXISTS `{fresh_database}`")
    finally:
        client.close()
    assert migrated == {name: table.names for name, table in TABLES.items()}
    # The writer places tombstones by the partition schemas.tables names (sinks.placement).
    assert {name: partitions[name] for name in TABLES} == {name: table.partition_key for name, table in TABLES.items()}


@pytest.fixture(scope="module")
def emitted() -> dict[str, list[dict]]:
    config = SimulationConfig(seed=3, days=2, start=dt.date(2026, 3, 3), duplicate_fraction=0.05,
                              out_of_order_fraction=0.1, invalid_fraction=0.02)
    result = offline_pipeline(Settings.model_construct()).run(simulate(config).lines)
    tables: dict[str, list[dict]] = {}
    for bundle in result.bundles:
        for table, rows in bundle.items():
            tables.setdefault(table, []).extend(rows)
    return tables


def test_every_row_the_core_emits_has_the_columns_of_its_table(emitted: dict[str, list[dict]]) -> None:
    produced = {"appointment_journeys", "stage_intervals", "queue_waits", "friction_events", "patient_journeys",
                "patient_visits", "events", "deadletters"}
    assert produced <= set(emitted)
    for table, rows in emitted.items():
        expected = set(TABLES[table].names) - NOW_FILLED - WRITERS_OWN.get(table, set())
        wrong = [sorted(set(row) - NOW_FILLED ^ expected) for row in rows if set(row) - NOW_FILLED != expected]
        assert not wrong, f"{table}: {len(wrong)} rows differ from the schema, e.g. {wrong[0]}"


def test_tombstones_have_the_columns_of_their_table() -> None:
    # An inferred no-show, then the arrival it missed comes in late: the hit goes away.
    hour = 3_600_000
    booked = [0, "appointment.booked", "cadence", "b1", "s1", "cardiology", "dr1", "pk",
              {"scheduled_start": hour, "duration_min": 20, "visit_type": "new", "modality": "in_person"}]
    arrived = [hour - 300_000, "patient.arrived", "kiosk", "a1", "s1", "cardiology", "dr1", "pk", {}]
    state = JourneyState()
    state.add(booked)
    rules = load_rules()
    first, _ = state.evaluate("appt", watermark_ms=2 * hour, policy=JourneyPolicy(), rules=rules)
    assert first is not None and [row["rule"] for row in first.bundle["friction_events"]] == ["no_show"]
    state.add(arrived)
    second, _ = state.evaluate("appt", watermark_ms=2 * hour, policy=JourneyPolicy(), rules=rules)
    assert second is not None
    tombstones = [row for row in second.bundle["friction_events"] if row["is_deleted"]]
    assert [row["rule"] for row in tombstones] == ["no_show"]
    assert set(tombstones[0]) == set(TABLES["friction_events"].names)
