"""What Apache Kafka adds to the embedded broker: data on disk across a broker restart, and
compacted changelogs the tables recover from (tansu keeps memory only and never compacts).

These tests start their own KRaft broker (``streams.kafka_server``); without Java and Maven
they are skipped, except under ``CI``, where that is a failure.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from runtime.config import Settings, load_settings
from simulator import SimulationConfig, simulate
from streams.kafka_server import KafkaServer
from streams.pipeline import LocalPipeline
from streams.topics import changelog_topics
from tests.conftest import start_kafka
from tests.truth import clickhouse_journeys, journey_mismatches

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DISORDERED = dict(duplicate_fraction=0.05, out_of_order_fraction=0.1, late_fraction=0.05, invalid_fraction=0.01)


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaServer]:
    # The log cleaner wakes up often, so that compaction is seen within the test.
    server = start_kafka(data_dir=tmp_path / "kafka", extra_config={"log.cleaner.backoff.ms": "200"})
    try:
        yield server
    finally:
        server.close()


def _settings(tmp_path: Path, clickhouse_dsn: str, database: str, **overrides: object) -> Settings:
    run = uuid.uuid4().hex[:8]
    overrides = {"commit_interval_s": 0.5, **overrides}
    return load_settings(app_id=f"journeys-{run}", consumer_group=f"journeys-{run}", data_dir=tmp_path / "data",
                         clickhouse_dsn=clickhouse_dsn, clickhouse_database=database, session_timeout_s=3.0,
                         batch_size=500, **overrides)


def _records(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return list(consumer)
    finally:
        consumer.close()


def test_changelogs_are_compacted_and_a_broker_restart_loses_nothing(kafka, tmp_path, clickhouse_dsn, fresh_database):
    simulation = simulate(SimulationConfig(seed=61, days=3, sites=2, **DISORDERED))
    lines = list(enumerate(simulation.lines, 1))
    settings = _settings(tmp_path, clickhouse_dsn, fresh_database)
    journey_changelog = changelog_topics(settings)[0]
    with LocalPipeline(settings, bootstrap=kafka.bootstrap) as pipeline:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)
                                            for name in changelog_topics(settings)])["topic"]
        policies = {name: configs["cleanup.policy"]["value"] for name, configs in described.items()}
        assert policies == dict.fromkeys(changelog_topics(settings), "compact")
        first = pipeline.feed(lines[: len(lines) // 2], progress=False)
        pipeline.wait_until_processed(final=False, progress=False)

        # Small segments: the cleaner compacts the journey changelog while we watch.
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, journey_changelog, configs={
            "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
            "delete.retention.ms": "100"})])
        admin.close()
        before = _records(kafka.bootstrap, journey_changelog, settings.partitions)
        superseded = len(before) - len({(r.partition, r.key) for r in before})
        assert superseded > 100, "the changelog should hold older states of the same journeys"
        pipeline.feed(lines[len(lines) // 2: len(lines) // 2 + 50], progress=False)  # rolls the segments
        pipeline.wait_until_processed(final=False, progress=False)
        deadline = time.monotonic() + 90
        while True:
            records = _records(kafka.bootstrap, journey_changelog, settings.partitions)
            per_key = Counter((r.partition, r.key) for r in records)
            left = sum(per_key.values()) - len(per_key)
            # The cleaner never touches the active segment: a few superseded states stay there.
            if left < superseded // 10:
                break
            assert time.monotonic() < deadline, f"not compacted: {left} of {superseded} superseded states left"
            time.sleep(1)

        # The broker goes down hard and comes back with its data; a worker killed meanwhile
        # recovers its tables from the compacted changelog.
        pipeline.workers[0].kill()
        kafka.restart(hard=True)
        second = pipeline.feed(lines[len(lines) // 2 + 50:], progress=False)
        pipeline.start_worker()
        end = max(first.max_occurred_ms or 0, second.max_occurred_ms or 0)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False, timeout=300)
        rows = clickhouse_journeys(pipeline.client, settings.clickhouse_database)
        mismatches, examples = journey_mismatches(simulation.truth, rows)
        assert not mismatches, f"metrics differing from the truth: {dict(mismatches)}; e.g. {examples}"


def test_kill_9_with_the_idempotent_producer(kafka, tmp_path, clickhouse_dsn, fresh_database):
    """The worker's producer with idempotence on (tansu has none): a worker killed mid-stream
    and its replacement still give the truth."""
    simulation = simulate(SimulationConfig(seed=63, days=3, sites=2, **DISORDERED))
    lines = list(enumerate(simulation.lines, 1))
    settings = _settings(tmp_path, clickhouse_dsn, fresh_database, idempotent_producer=True, commit_interval_s=1.0,
                         producer_max_batch_size=1)
    with LocalPipeline(settings, bootstrap=kafka.bootstrap) as pipeline:
        first = pipeline.feed(lines[: len(lines) // 2], progress=False)
        victim = pipeline.workers[0]
        deadline = time.monotonic() + 60
        while victim.metrics().get("journeys_events_valid_total", 0) < first.valid // 2:
            assert time.monotonic() < deadline, "the worker did not start consuming"
            time.sleep(0.05)
        victim.kill()
        second = pipeline.feed(lines[len(lines) // 2:], progress=False)
        pipeline.start_worker()
        end = max(first.max_occurred_ms or 0, second.max_occurred_ms or 0)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False, timeout=300)
        rows = clickhouse_journeys(pipeline.client, settings.clickhouse_database)
        mismatches, examples = journey_mismatches(simulation.truth, rows)
        assert not mismatches, f"metrics differing from the truth: {dict(mismatches)}; e.g. {examples}"
