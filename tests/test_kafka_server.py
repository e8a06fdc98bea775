"""A real Apache Kafka 4.x broker from :mod:`streams.kafka_server`: start, records, restarts, compaction.

One broker serves the module (a JVM start costs seconds on two shared cores); tests use
their own uniquely named topics. Without Java or Maven the module is skipped locally,
but fails in CI (``CI`` set): there a missing toolchain is a broken pipeline, not a
reason to silently test less.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streams.kafka_server import KafkaServer, KafkaUnavailable, fetch_kafka_jars

REPO = Path(__file__).resolve().parents[1]


def _unavailable(error: KafkaUnavailable) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"real Kafka unavailable in CI: {error}", pytrace=False)
    pytest.skip(f"real Kafka unavailable: {error}")


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaServer]:
    server = KafkaServer(partitions=2, extra_config={"log.cleaner.backoff.ms": "100"})
    try:
        fetch_kafka_jars()  # once per machine; excluded from the start time below
        started = time.monotonic()
        server.start()
    except KafkaUnavailable as error:
        server.close()
        _unavailable(error)
    server.start_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.close()


def _topic(bootstrap: str, partitions: int = 2, **configs: str) -> str:
    name = f"test.kafka.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        admin.close()
    return name


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _read(bootstrap: str, topic: str, expected: int, partitions: int = 2, timeout_s: float = 30) -> list:
    """Every record of ``topic`` from the beginning, once ``expected`` are there (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    records: list = []
    while time.monotonic() < deadline:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1500)
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            records = list(consumer)
        finally:
            consumer.close()
        if len(records) >= expected:
            break
    return records


def _records(count: int, tag: str = "v") -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), f"{tag}{i}".encode()) for i in range(count)]


def test_start_is_quick_and_logs_to_a_file(kafka: KafkaServer) -> None:
    assert kafka.bootstrap.startswith("127.0.0.1:")
    assert kafka.pid is not None and Path(f"/proc/{kafka.pid}").exists()
    assert kafka.start_seconds < 15, f"start took {kafka.start_seconds:.1f}s"  # type: ignore[attr-defined]
    assert "Kafka Server started" in kafka.log_path.read_text()
    assert "Kafka Server started" not in kafka.stdout_path.read_text()
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()


def test_produce_and_consume_100_records_in_a_group(kafka: KafkaServer) -> None:
    topic = _topic(kafka.bootstrap)
    sent = _records(100)
    _produce(kafka.bootstrap, topic, sent)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=f"group-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        got: list = []
        deadline = time.monotonic() + 40  # the first group creates __consumer_offsets
        while len(got) < 100 and time.monotonic() < deadline:
            got += list(consumer)
        consumer.commit()
        committed = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(2))
    finally:
        consumer.close()
    assert sorted((r.key, r.value) for r in got) == sorted(sent)
    assert committed == 100


def test_restart_keeps_the_data_and_the_port(kafka: KafkaServer) -> None:
    topic = _topic(kafka.bootstrap)
    _produce(kafka.bootstrap, topic, _records(100))
    bootstrap, data_dir = kafka.bootstrap, kafka.data_dir

    for hard in (False, True):  # controlled shutdown, then a crash (log recovery)
        old_pid = kafka.pid
        kafka.restart(hard=hard)
        assert (kafka.bootstrap, kafka.data_dir) == (bootstrap, data_dir)
        assert kafka.pid != old_pid and not Path(f"/proc/{old_pid}").exists()
        assert len(_read(kafka.bootstrap, topic, 100)) == 100, f"records lost by restart(hard={hard})"

    _produce(kafka.bootstrap, topic, _records(10, tag="after"))
    assert len(_read(kafka.bootstrap, topic, 110)) == 110


def test_compaction_leaves_the_latest_value_per_key(kafka: KafkaServer) -> None:
    # segment.bytes cannot go below 1 MiB in Kafka 4.x: roll segments by time instead
    # (the cleaner never touches the active segment).
    topic = _topic(
        kafka.bootstrap,
        partitions=1,
        **{"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01"},
    )
    keys = 20
    for version in range(5):
        _produce(kafka.bootstrap, topic, [(f"k{k}".encode(), f"v{version}".encode()) for k in range(keys)])
        time.sleep(0.2)

    latest: dict[bytes, bytes] = {}
    records: list = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _produce(kafka.bootstrap, topic, [(b"roll", b"x")])  # appending rolls the expired segment
        records = [r for r in _read(kafka.bootstrap, topic, 0, partitions=1) if r.key != b"roll"]
        latest = {r.key: r.value for r in records}
        if len(records) == keys:
            break
        time.sleep(0.5)
    assert len(records) == keys, f"{len(records)} records left of {5 * keys} for {keys} keys after 60 s"
    assert set(latest.values()) == {b"v4"}
    assert min(r.offset for r in records) >= 4 * keys  # the older versions are gone from the log


def test_a_new_server_on_the_same_data_dir_finds_port_and_records(tmp_path: Path, kafka: KafkaServer) -> None:
    data_dir = tmp_path / "kafka"
    with KafkaServer(data_dir=data_dir) as first:
        bootstrap = first.bootstrap
        topic = _topic(bootstrap, partitions=1)
        _produce(bootstrap, topic, _records(20))
    assert data_dir.is_dir(), "a caller's data dir is never removed"
    with KafkaServer(data_dir=data_dir) as second:
        assert second.bootstrap == bootstrap
        assert len(_read(bootstrap, topic, 20, partitions=1)) == 20


def test_journeys_broker_kafka_prints_the_bootstrap_and_stops_on_sigterm(tmp_path: Path, kafka: KafkaServer) -> None:
    from runtime.children import free_port

    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "broker", "--kafka", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "main")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("127.0.0.1:"), line
        admin = KafkaAdminClient(bootstrap_servers=line)
        admin.close()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    pid = int(stderr.split("pid=")[1].split(":")[0])
    assert not Path(f"/proc/{pid}").exists(), "the broker JVM outlived journeys broker"


def test_missing_java_or_maven_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = shutil.which("java")
    java = Path(found).resolve() if found else None
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(KafkaUnavailable, match="^java not on PATH") as raised:
        KafkaServer(data_dir=tmp_path / "d").start()
    assert "\n" not in str(raised.value)

    if java is None:
        pytest.skip("no java here to test the missing-mvn message")
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(only_java))
    with pytest.raises(KafkaUnavailable, match="^mvn not on PATH"):
        fetch_kafka_jars(cache_dir=tmp_path / "cache")
