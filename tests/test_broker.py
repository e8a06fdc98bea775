"""The real local broker: topics, producing 100k events and reading every one back.

Counts come from reading the records, never from end offsets (tansu's ListOffsets(latest)
is wrong). Each test writes to its own uniquely named topics on the session broker.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.main import main
from schemas.events import FAMILIES, FAMILY_BY_TYPE, Family
from schemas.export import example_event
from streams.broker import LocalBroker
from streams.produce import EventProducer, produce_events
from streams.topics import TopicMismatchError, ensure_topics, topic_partitions

EVENT_TYPES = sorted(FAMILY_BY_TYPE)


def generate_lines(count: int, appointments: int = 5000, seed: int = 7) -> Iterator[tuple[int, bytes]]:
    """``count`` numbered event lines of every type, keyed over ``appointments`` visits."""
    rng = random.Random(seed)
    for number in range(1, count + 1):
        event_type = EVENT_TYPES[rng.randrange(len(EVENT_TYPES))]
        event = example_event(
            event_type,
            event_id=f"gen-{number}",
            appointment_id=f"appt-{rng.randrange(appointments)}",
            occurred_at=f"2026-03-{1 + number % 28:02d}T{number % 24:02d}:{number % 60:02d}:00+00:00",
        )
        yield number, orjson.dumps(event)


def consume_exactly(bootstrap: str, topics: Iterable[str], expected: int, timeout_s: float = 120.0) -> list[Any]:
    """Read every record of ``topics`` from the start until ``expected`` have arrived, plus a grace period.

    No consumer group (partitions are assigned): no join delay, no committed offsets.
    The grace period catches records beyond the expected count (duplicates). aiokafka,
    because its C record parser reads 100k records several times faster than kafka-python.
    """
    return asyncio.run(_consume(bootstrap, list(topics), expected, timeout_s))


async def _consume(bootstrap: str, topics: list[str], expected: int, timeout_s: float) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        # The topics were made with 4 partitions each (make_topics); a consumer without a
        # subscription has no metadata for them yet on Apache Kafka.
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(4)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=50_000)).values():
                records.extend(batch)
        grace = time.monotonic() + 1.0
        while time.monotonic() < grace:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@pytest.fixture
def family_topics(make_topics: Any) -> tuple[dict[Family, str], str]:
    names = make_topics(*FAMILIES, "deadletter")
    return dict(zip(FAMILIES, names[:4])), names[4]


@pytest.mark.slow
def test_100k_events_each_on_its_family_topic_keyed_by_appointment(
    broker: LocalBroker, family_topics: tuple[dict[Family, str], str]
) -> None:
    topics, deadletter = family_topics
    lines = list(generate_lines(100_000))
    # Two unroutable lines and one routable-but-invalid line among them.
    lines[500] = (lines[500][0], b'{"event_type": "patient.arrived", "appointment_id": "x"')
    lines[700] = (lines[700][0], b'{"event_type": "patient.teleported", "appointment_id": "x"}')
    invalid = orjson.loads(lines[900][1])
    del invalid["site_id"]
    lines[900] = (lines[900][0], orjson.dumps(invalid))

    expected: dict[bytes, tuple[str, bytes | None]] = {}
    for _, raw in lines:
        try:
            event = orjson.loads(raw)
            topic = topics[FAMILY_BY_TYPE[event["event_type"]]]
            expected[raw] = (topic, event["appointment_id"].encode())
        except (orjson.JSONDecodeError, KeyError):
            expected[raw] = (deadletter, None)
    expected_per_topic = Counter(topic for topic, _ in expected.values())

    started = time.perf_counter()
    result = produce_events(lines, broker.bootstrap, topics, progress=False, deadletter_topic=deadletter,
                            origin_file="generated.jsonl")
    produced_s = time.perf_counter() - started
    assert result.counts == dict(expected_per_topic)
    assert result.unroutable == 2 and result.total == 100_000

    started = time.perf_counter()
    records = consume_exactly(broker.bootstrap, [*topics.values(), deadletter], expected=100_000)
    consumed_s = time.perf_counter() - started
    print(f"\nproduced 100k in {produced_s:.2f}s, consumed in {consumed_s:.2f}s")

    assert len(records) == 100_000
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        topic, key = expected.pop(record.value)  # KeyError: a duplicate or a record never sent
        assert record.topic == topic
        assert record.key == key
        if key is not None:
            partitions_of_key[key].add(record.partition)
        if topic == deadletter:
            headers = dict(record.headers)
            assert headers["reason"] in (b"malformed_json", b"unknown_event_type")
            assert headers["origin_file"] == b"generated.jsonl"
            assert int(headers["origin_line"]) in (lines[500][0], lines[700][0])
    assert expected == {}
    # Co-partitioning: an appointment's events share one partition number across the family topics.
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())


def test_send_raw_hook_sends_control_records_to_a_chosen_partition(broker: LocalBroker, make_topics: Any) -> None:
    (topic,) = make_topics("control")
    with EventProducer(broker.bootstrap) as producer:
        for partition in range(4):
            producer.send_raw(topic, partition, None, b"watermark", [("kind", b"control")])
        assert producer.flush().counts == {topic: 4}
    records = consume_exactly(broker.bootstrap, [topic], expected=4)
    assert sorted(r.partition for r in records) == [0, 1, 2, 3]
    assert all(r.value == b"watermark" and dict(r.headers) == {"kind": b"control"} for r in records)


def test_produce_command_prints_counts_per_topic(
    broker: LocalBroker, make_topics: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = make_topics(*FAMILIES, "deadletter")
    for family, name in zip(FAMILIES, names):
        monkeypatch.setenv(f"JOURNEYS_TOPIC_{family.upper()}", name)
    monkeypatch.setenv("JOURNEYS_TOPIC_DEADLETTER", names[4])
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b"\n".join([orjson.dumps(example_event("patient.arrived")), b"", orjson.dumps(example_event("wait.ended")),
                    b"{not json"]) + b"\n"
    )
    # One line is not JSON: sent to the dead-letter topic, said on stderr, exit 1 (like validate).
    assert main(["produce", str(path), "--bootstrap", broker.bootstrap, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "1 lines have no family topic" in captured.err
    out = captured.out.splitlines()
    assert f"{names[1]}: 1" in out and f"{names[2]}: 1" in out and f"{names[4]}: 1" in out
    assert out[-1] == f"total: 3 (unroutable, sent to {names[4]}: 1)"
    records = consume_exactly(broker.bootstrap, names, expected=3)
    dead = [r for r in records if r.topic == names[4]]
    assert len(records) == 3 and dict(dead[0].headers)["origin_line"] == b"4"


def test_produce_command_refuses_missing_topics_unless_asked_to_create(
    broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = f"{time.time_ns()}"
    monkeypatch.setenv("JOURNEYS_TOPIC_SCHEDULING", f"test.absent.scheduling.{suffix}")
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(example_event("appointment.booked")) + b"\n")
    assert main(["produce", str(path), "--bootstrap", broker.bootstrap, "--no-progress"]) == 1
    assert "missing topics" in capsys.readouterr().err
    assert main(["produce", str(path), "--bootstrap", broker.bootstrap, "--no-progress", "--create-topics"]) == 0
    assert topic_partitions(broker.bootstrap, [f"test.absent.scheduling.{suffix}"]) == {
        f"test.absent.scheduling.{suffix}": 4
    }


def test_ensure_topics_creates_missing_and_rejects_other_partition_counts(broker: LocalBroker) -> None:
    suffix = time.time_ns()
    two, four = f"test.two.{suffix}", f"test.four.{suffix}"
    assert ensure_topics(broker.bootstrap, [two], partitions=2) == [two]
    assert ensure_topics(broker.bootstrap, [two], partitions=2) == []  # idempotent
    with pytest.raises(TopicMismatchError) as caught:
        ensure_topics(broker.bootstrap, [four, two], partitions=4)
    assert caught.value.mismatches == {two: 2}
    assert "test.two" in str(caught.value) and "has 2" in str(caught.value)
    assert topic_partitions(broker.bootstrap, [four]) == {four: 4}  # the missing one was still created


def test_session_broker_has_the_settings_topics(broker: LocalBroker) -> None:
    from runtime.config import Settings

    partitions = topic_partitions(broker.bootstrap, Settings.model_construct().all_topics)
    assert partitions == {topic: 4 for topic in Settings.model_construct().all_topics}


def test_local_broker_starts_on_a_given_port_and_stops_its_process() -> None:
    from runtime.children import free_port

    port = free_port()
    with LocalBroker(port=port, topics=["t"], partitions=2) as local:
        assert local.bootstrap == f"127.0.0.1:{port}"
        process = local.process
        assert process is not None and process.poll() is None
        assert topic_partitions(local.bootstrap) == {"t": 2}
    assert process.poll() is not None
    assert local.process is None
