"""The same events in any arrival order give the same journeys, through the real pipeline.

SPEC section 3: "the result must not depend on arrival order ... a source's whole history
arriving after another's, a backfill months behind live traffic, events grouped by
appointment rather than by time", and "one bad clock must not move event time for
everyone else". Each test feeds a real broker, Faust workers and the ClickHouse writer,
and compares ``appointment_journeys FINAL`` with the simulator's truth, which the
simulator computes from its own model, not from the events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
import zlib
from collections.abc import Callable

import orjson
import pytest

from simulator import SimulationConfig, simulate
from streams.pipeline import LocalPipeline
from tests.truth import clickhouse_journeys, journey_mismatches

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DISORDERED = dict(duplicate_fraction=0.05, out_of_order_fraction=0.1, late_fraction=0.05, invalid_fraction=0.01)


def _event(line: bytes) -> dict | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _occurred(line: bytes) -> str:
    event = _event(line)
    return str(event.get("occurred_at", "")) if event else ""


def _field(name: str) -> Callable[[bytes], str]:
    def key(line: bytes) -> str:
        event = _event(line)
        return str(event.get(name, "")) if event else ""
    return key


def in_time_order(lines: list[bytes]) -> list[bytes]:
    # occurred_at carries site-local offsets: order by the instant.
    def instant(line: bytes) -> float:
        text = _occurred(line)
        try:
            return dt.datetime.fromisoformat(text).timestamp()
        except ValueError:
            return 0.0
    return sorted(lines, key=instant)


ORDERS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "time-order": in_time_order,
    "grouped-by-appointment": lambda lines: sorted(lines, key=_field("appointment_id")),
    "shuffled": lambda lines: random.Random(11).sample(lines, len(lines)),
    "source-after-source": lambda lines: sorted(lines, key=_field("source"), reverse=True),
    "family-after-family": lambda lines: sorted(lines, key=lambda line: str(_event(line) and _event(line)["event_type"])),
    # Everything once in delivery order, then a third of it again, reversed (a replayed backlog).
    "redelivered": lambda lines: lines + lines[::-3],
}


def assert_matches_truth(pipeline: LocalPipeline, truth: dict) -> None:
    rows = clickhouse_journeys(pipeline.client, pipeline.settings.clickhouse_database)
    mismatches, examples = journey_mismatches(truth, rows)
    extra = sorted(set(rows) - set(truth))[:3]
    assert not mismatches, f"metrics differing from the truth: {dict(mismatches)}; e.g. {examples}; extra {extra}"


# Each order on one broker kind (the broker does not decide the order's result), half on each.
ORDER_BROKERS = {"time-order": "tansu", "grouped-by-appointment": "tansu", "source-after-source": "tansu",
                 "shuffled": "kafka", "family-after-family": "kafka", "redelivered": "kafka"}


@pytest.mark.parametrize("order", [pytest.param(order, marks=pytest.mark.one_broker(ORDER_BROKERS[order]))
                                   for order in sorted(ORDERS)])
def test_every_arrival_order_gives_the_truth(broker, isolated_settings, order: str) -> None:
    simulation = simulate(SimulationConfig(seed=41, days=3, sites=2, **DISORDERED))
    lines = ORDERS[order](list(simulation.lines))
    with LocalPipeline(isolated_settings(), bootstrap=broker.bootstrap) as pipeline:
        counts = pipeline.feed(enumerate(lines, 1), progress=False)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        assert_matches_truth(pipeline, simulation.truth)


def _renamed(lines: list[bytes], prefix: str) -> list[bytes]:
    """The same events for other appointments (a second simulated period must not collide)."""
    renamed = []
    for line in lines:
        event = _event(line)
        if event and isinstance(event.get("appointment_id"), str) and event["appointment_id"]:
            event["appointment_id"] = prefix + event["appointment_id"]
            event["event_id"] = prefix + str(event.get("event_id"))
            line = orjson.dumps(event)
        renamed.append(line)
    return renamed


def test_a_backfill_months_behind_live_traffic(broker, isolated_settings) -> None:
    """Live traffic runs three months ahead; then last quarter's scheduling history arrives,
    and after it the check-in history (a second source's backfill)."""
    old = simulate(SimulationConfig(seed=43, days=2, sites=2, start=dt.date(2026, 3, 2), **DISORDERED))
    live = simulate(SimulationConfig(seed=44, days=2, sites=2, start=dt.date(2026, 6, 1), **DISORDERED))
    live_lines = _renamed(list(live.lines), "L")
    # Three months on, every journey of the old quarter is closed.
    truth = {**{key: dataclasses.replace(value, is_final=True) for key, value in old.truth.items()},
             **{f"L{key}": value for key, value in live.truth.items()}}
    checkin = [line for line in old.lines if b'"patient.' in line or b'"provider.' in line]
    others = [line for line in old.lines if line not in set(checkin)]
    with LocalPipeline(isolated_settings(), bootstrap=broker.bootstrap) as pipeline:
        fed = [pipeline.feed(enumerate(live_lines, 1), progress=False)]
        pipeline.wait_until_processed(final=False, progress=False)
        fed.append(pipeline.feed(enumerate(others, 1), progress=False))
        fed.append(pipeline.feed(enumerate(checkin, 1), progress=False))
        end = max(counts.max_occurred_ms or 0 for counts in fed)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False)
        assert_matches_truth(pipeline, truth)
        metrics = pipeline.worker_metrics()
        assert metrics["journeys_archive_returns_total"] > 0, "the backfill should bring archived journeys back"


@pytest.mark.one_broker("tansu")
def test_one_bad_clock_moves_event_time_for_nobody(broker, isolated_settings) -> None:
    """One valid event dated 2100 (a device with a broken clock) is refused as
    future_timestamp; another dated 60 days ahead but in the past, on one source only,
    moves nobody else's event time while the others flow."""
    simulation = simulate(SimulationConfig(seed=45, days=3, sites=2, **DISORDERED))
    lines = list(simulation.lines)
    template = _event(next(line for line in lines if b'"patient.arrived"' in line))
    assert template is not None
    far = {**template, "event_id": "bad-clock-2100", "appointment_id": "BAD-2100", "occurred_at": "2100-01-01T09:00:00Z"}
    lines.insert(len(lines) // 3, orjson.dumps(far))
    with LocalPipeline(isolated_settings(), bootstrap=broker.bootstrap) as pipeline:
        counts = pipeline.feed(enumerate(lines, 1), progress=False)
        assert counts.max_occurred_ms is not None and counts.max_occurred_ms < 4_102_444_800_000  # 2100 not the end
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        assert_matches_truth(pipeline, simulation.truth)
        db = pipeline.settings.clickhouse_database
        assert pipeline.client.command(
            f"SELECT count() FROM {db}.deadletters FINAL WHERE reason = 'future_timestamp'") == 1
        assert pipeline.worker_metrics()['journeys_dead_letters_total{reason="future_timestamp"}'] == 1


def test_a_restart_in_the_middle_of_a_backfill(broker, isolated_settings) -> None:
    old = simulate(SimulationConfig(seed=47, days=2, sites=2, start=dt.date(2026, 3, 2), **DISORDERED))
    live = simulate(SimulationConfig(seed=48, days=2, sites=2, start=dt.date(2026, 6, 1), **DISORDERED))
    truth = {**{key: dataclasses.replace(value, is_final=True) for key, value in old.truth.items()},
             **{f"L{key}": value for key, value in live.truth.items()}}
    backfill = list(enumerate(old.lines, 1))
    settings = isolated_settings(producer_max_batch_size=1, commit_interval_s=0.2)
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        fed = [pipeline.feed(enumerate(_renamed(list(live.lines), "L"), 1), progress=False)]
        pipeline.wait_until_processed(final=False, progress=False)
        victim = pipeline.workers[0]
        before = victim.metrics().get("journeys_events_valid_total", 0)
        fed.append(pipeline.feed(backfill[: len(backfill) // 2], progress=False))
        deadline = time.monotonic() + 60
        while victim.metrics().get("journeys_events_valid_total", 0) < before + fed[-1].valid // 3:
            assert time.monotonic() < deadline, "the worker did not take the backfill"
            time.sleep(0.05)
        victim.kill()
        fed.append(pipeline.feed(backfill[len(backfill) // 2:], progress=False))
        pipeline.start_worker()
        end = max(counts.max_occurred_ms or 0 for counts in fed)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False)
        assert_matches_truth(pipeline, truth)


def _conflicting_copies(lines: list[bytes], every: int = 7) -> list[bytes]:
    """Second copies of some rooming events: same source and event_id, another room (a
    source that re-sent a corrected message under the same id)."""
    copies = []
    for line in lines:
        event = _event(line)
        if event and event.get("event_type") == "patient.roomed" and zlib.crc32(event["event_id"].encode()) % every == 0:
            copies.append(orjson.dumps({**event, "room": f"corrected-{event.get('room')}"}))
    return copies


def _events_snapshot(pipeline: LocalPipeline) -> list[tuple]:
    db = pipeline.settings.clickhouse_database
    return pipeline.client.query(
        f"SELECT source, event_id, fields, copy_rank FROM {db}.events FINAL ORDER BY source, event_id").result_rows


@pytest.mark.one_broker("kafka")
def test_copies_with_different_payloads_resolve_to_one_copy_in_any_order(broker, isolated_settings) -> None:
    simulation = simulate(SimulationConfig(seed=49, days=2, sites=2, duplicate_fraction=0.02))
    lines = list(simulation.lines)
    copies = _conflicting_copies(lines)
    assert len(copies) > 10
    snapshots = []
    for order in (lines + copies, copies + lines):
        with LocalPipeline(isolated_settings(), bootstrap=broker.bootstrap) as pipeline:
            counts = pipeline.feed(enumerate(order, 1), progress=False)
            pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
            assert_matches_truth(pipeline, simulation.truth)  # a room is no metric: the truth holds
            db = pipeline.settings.clickhouse_database
            journeys = pipeline.client.query(
                f"SELECT appointment_id, version FROM {db}.appointment_journeys FINAL ORDER BY appointment_id")
            snapshots.append((_events_snapshot(pipeline), journeys.result_rows))
    assert snapshots[0] == snapshots[1]
