"""The whole pipeline with real parts: the local broker, Faust worker processes, the
ClickHouse writer on the real engine (chdb, or a server when CLICKHOUSE_URL is set).

Every test compares what lands in ``appointment_journeys FINAL`` with the simulator's
truth, computed from the simulation model, not from the events.
"""

from __future__ import annotations

import time
import uuid

import pytest

from runtime.config import Settings
from simulator import SimulationConfig, simulate
from streams.pipeline import LocalPipeline
from tests.truth import clickhouse_journeys, journey_mismatches

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DISORDERED = dict(duplicate_fraction=0.05, out_of_order_fraction=0.1, late_fraction=0.05, invalid_fraction=0.01)


def lines_of(simulation) -> list[tuple[int, bytes]]:
    return list(enumerate(simulation.lines, start=1))


def assert_matches_truth(pipeline: LocalPipeline, simulation) -> None:
    db = pipeline.settings.clickhouse_database
    rows = clickhouse_journeys(pipeline.client, db)
    mismatches, examples = journey_mismatches(simulation.truth, rows)
    history = ""
    if mismatches:
        appointment = next(e[0] for e in examples.values() if isinstance(e, tuple))
        history = repr(pipeline.client.query(
            f"SELECT version, event_count, status FROM {db}.appointment_journeys WHERE appointment_id = "
            f"'{appointment}' ORDER BY version").result_rows) + repr(pipeline.client.query(
            f"SELECT event_type, partition, offset FROM {db}.events WHERE appointment_id = '{appointment}'").result_rows)
    assert not mismatches, f"metrics differing from the truth: {dict(mismatches)}; e.g. {examples}; {history}"


def test_replay_matches_truth_and_dead_letters_are_counted_not_stored(broker, isolated_settings):
    simulation = simulate(SimulationConfig(seed=21, days=4, sites=2, **DISORDERED))
    settings = isolated_settings()
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        counts = pipeline.feed(lines_of(simulation), origin="sim.jsonl", progress=False)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        assert_matches_truth(pipeline, simulation)
        db, client = settings.clickhouse_database, pipeline.client
        assert counts.dead_lettered == len(simulation.invalid_line_numbers) > 0
        assert client.command(f"SELECT count() FROM {db}.deadletters FINAL") == counts.dead_lettered
        assert client.command(f"SELECT count() FROM {db}.events FINAL") == simulation.stats.events
        # The simulator's duplicates are byte-identical re-sends: one row each.
        assert pipeline.worker_metrics()["journeys_duplicates_total"] == simulation.stats.duplicates
        patients = {r["patient_key"]: r for r in client.query(
            f"SELECT * FROM {db}.patient_journeys FINAL").named_results()}
        assert sum(r["visits_completed"] for r in patients.values()) == sum(
            1 for t in simulation.truth.values() if t.status == "completed")
        assert sum(r["no_shows"] for r in patients.values()) == sum(1 for t in simulation.truth.values() if t.no_show
                                                                     and t.status == "no_show")


def test_replaying_twice_changes_nothing(broker, isolated_settings):
    simulation = simulate(SimulationConfig(seed=5, days=2, sites=1, **DISORDERED))
    settings = isolated_settings()
    snapshots = []
    for attempt in range(2):
        run = uuid.uuid4().hex[:6]
        fresh_topics = settings.model_copy(update={
            "app_id": f"{settings.app_id}-{run}", "consumer_group": f"{settings.consumer_group}-{run}",
            **{f"topic_{n}": f"{getattr(settings, f'topic_{n}')}.{run}" for n in
               ("scheduling", "checkin", "waits", "telehealth", "deadletter", "output", "patient_updates")}})
        with LocalPipeline(fresh_topics, bootstrap=broker.bootstrap) as pipeline:
            counts = pipeline.feed(lines_of(simulation), progress=False)
            pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
            snapshots.append(_snapshot(pipeline.client, settings.clickhouse_database))
    assert snapshots[0] == snapshots[1]
    assert snapshots[0]["appointment_journeys"] == len(simulation.truth)


def _snapshot(client, db: str) -> dict:
    tables = {
        "appointment_journeys": "appointment_id", "stage_intervals": "appointment_id, stage",
        "queue_waits": "appointment_id, wait_key", "friction_events": "appointment_id, rule, hit_key",
        "patient_journeys": "patient_key", "patient_visits": "appointment_id", "events": "source, event_id",
    }
    snapshot: dict = {}
    for table, order in tables.items():
        snapshot[table] = client.command(f"SELECT count() FROM {db}.{table} FINAL")
        excluded = "EXCEPT (ingested_at, partition, offset, topic)" if table == "events" else ""
        snapshot[f"{table}_hash"] = client.command(
            f"SELECT groupBitXor(cityHash64(*)) FROM (SELECT * {excluded} FROM {db}.{table} FINAL ORDER BY {order})")
    return snapshot


def committed_offsets(bootstrap: str, settings: Settings) -> dict:
    """The consumer group's committed input offsets (the offsets a restarted worker starts from)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.consumer_group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for topic in settings.input_topics for p in range(settings.partitions)]
        return {tp: offset for tp in partitions if (offset := consumer.committed(tp))}
    finally:
        consumer.close()


@pytest.mark.parametrize("commits_before_kill", [False, True], ids=["killed-before-first-commit", "killed-after-commits"])
def test_kill_9_worker_mid_stream_then_restart_equals_uninterrupted(broker, isolated_settings, commits_before_kill):
    """The restarted worker finds input pending and recovers its tables from the changelog.

    Killed before its first commit, the group has no committed offsets: Faust's stock
    transport then lost the records fetched during table recovery (2 restarts in 5 here);
    ``streams.transport`` seeks those partitions to their start.
    """
    simulation = simulate(SimulationConfig(seed=8, days=3, sites=2, **DISORDERED))
    lines = lines_of(simulation)
    # One record per producer batch: the local broker misreports the end offset of a
    # multi-record batch, which would make the restarted worker's table recovery stop short.
    settings = isolated_settings(producer_max_batch_size=1, commit_interval_s=0.2 if commits_before_kill else 3600)
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        first = pipeline.feed(lines[: len(lines) // 2], progress=False)
        victim = pipeline.workers[0]
        deadline = time.monotonic() + 60
        while (victim.metrics().get("journeys_events_valid_total", 0) < first.valid // 2
               or (commits_before_kill and not committed_offsets(broker.bootstrap, settings))):
            assert time.monotonic() < deadline, "the worker did not start consuming (or committing)"
            time.sleep(0.1)
        victim.kill()
        assert bool(committed_offsets(broker.bootstrap, settings)) == commits_before_kill
        second = pipeline.feed(lines[len(lines) // 2:], progress=False)
        pipeline.start_worker()
        end = max(first.max_occurred_ms or 0, second.max_occurred_ms or 0)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False)
        assert_matches_truth(pipeline, simulation)


def test_two_workers_give_the_same_result_as_one(broker, isolated_settings):
    simulation = simulate(SimulationConfig(seed=13, days=3, sites=2, **DISORDERED))
    settings = isolated_settings()
    with LocalPipeline(settings, bootstrap=broker.bootstrap, workers=2) as pipeline:
        counts = pipeline.feed(lines_of(simulation), progress=False)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        assert_matches_truth(pipeline, simulation)


def test_a_worker_joining_mid_stream_changes_nothing(broker, isolated_settings):
    """A second worker joins while input flows: partitions move between workers mid-stream."""
    simulation = simulate(SimulationConfig(seed=29, days=3, sites=2, **DISORDERED))
    lines = lines_of(simulation)
    # One record per producer batch: see the kill -9 test (the joining worker recovers tables).
    with LocalPipeline(isolated_settings(producer_max_batch_size=1), bootstrap=broker.bootstrap) as pipeline:
        counts = [pipeline.feed(lines[: len(lines) // 4], progress=False)]
        pipeline.start_worker(wait=False)
        rest = lines[len(lines) // 4:]
        chunk = len(rest) // 30 + 1
        for start in range(0, len(rest), chunk):  # about 10 s of input while the group rebalances
            counts.append(pipeline.feed(rest[start: start + chunk], progress=False))
            time.sleep(0.33)
        end = max(c.max_occurred_ms or 0 for c in counts)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False)
        assert_matches_truth(pipeline, simulation)
        assert all(worker.metrics().get("journeys_events_valid_total", 0) > 0 for worker in pipeline.workers)


def test_rocksdb_state_store_gives_the_same_result(broker, isolated_settings):
    """Production keeps journey state in RocksDB (rocksdict) instead of memory."""
    simulation = simulate(SimulationConfig(seed=17, days=2, sites=2, **DISORDERED))
    settings = isolated_settings(store="rocksdb")
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        counts = pipeline.feed(lines_of(simulation), progress=False)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        assert_matches_truth(pipeline, simulation)
        assert any(pipeline.run_dir.glob("worker-0/faust/**/*.sst")) or any(pipeline.run_dir.glob("worker-0/**/CURRENT"))


def test_no_raw_patient_id_downstream(broker, isolated_settings):
    from kafka import KafkaConsumer

    simulation = simulate(SimulationConfig(seed=3, days=2, sites=1, duplicate_fraction=0.02))
    patient_ids = {t.patient_id.encode() for t in simulation.truth.values()}
    settings = isolated_settings()
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        counts = pipeline.feed(lines_of(simulation), progress=False)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        downstream = [settings.topic_output, settings.topic_patient_updates,
                      f"{settings.app_id}-journey_state-changelog", f"{settings.app_id}-patient_state-changelog"]
        consumer = KafkaConsumer(*downstream, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=3000)
        records = [(r.key or b"") + (r.value or b"") for r in consumer]
        consumer.close()
        assert len(records) > 100
        leaked = {pid for pid in patient_ids if any(pid in record for record in records)}
        assert not leaked, f"raw patient_id in output topics: {sorted(leaked)[:3]}"
        db = settings.clickhouse_database
        for table in ("events", "appointment_journeys", "patient_journeys", "patient_visits", "friction_events"):
            text = repr(pipeline.client.query(f"SELECT * FROM {db}.{table}").result_rows).encode()
            assert not any(pid in text for pid in patient_ids), f"raw patient_id in {table}"


def test_sync_command_after_an_external_producer(broker, isolated_settings, monkeypatch):
    """A pipeline running on its own, fed by someone else's producer: `journeys sync --final`
    returns once everything is in ClickHouse."""
    from cli.main import main
    from streams.produce import produce_events

    simulation = simulate(SimulationConfig(seed=31, days=2, sites=1, duplicate_fraction=0.03))
    settings = isolated_settings()
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        produce_events(simulation.lines, broker.bootstrap, settings.topics, progress=False)
        for name in ("topic_scheduling", "topic_checkin", "topic_waits", "topic_telehealth", "clickhouse_database"):
            monkeypatch.setenv(f"JOURNEYS_{name.upper()}", getattr(settings, name))
        monkeypatch.setenv("JOURNEYS_PARTITIONS", str(settings.partitions))
        assert main(["sync", "--bootstrap", broker.bootstrap, "--clickhouse", settings.dsn, "--final"]) == 0
        assert_matches_truth(pipeline, simulation)
