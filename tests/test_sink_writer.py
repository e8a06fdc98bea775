"""The Kafka -> ClickHouse writer end to end: a real broker (tansu) and a real engine.

The engine is chdb unless ``CLICKHOUSE_URL`` names a server (see tests/test_sink_rows.py):

    CLICKHOUSE_URL=http://default:@127.0.0.1:8123 pytest tests/test_sink_writer.py

What is checked: rows and markers arrive; a SIGKILLed writer restarted mid-run loses
and duplicates nothing; nothing is committed while ClickHouse is unreachable, and a
later writer in the same group gets every record; consumption pauses while inserts
fail and resumes after; two writers in one group share the partitions through a
rebalance; the HTTP endpoints answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from schemas.timestamps import HOUR_MS
from sinks.client import Client, connect
from sinks.markers import marker_rows
from sinks.migrate import migrate
from sinks.rows import Origin, WriteFaults
from sinks.writer import SinkWriter, WriterConfig
from streams.broker import LocalBroker, free_port
from streams.markers import wait_for_marker
from tests.rows import (
    T0,
    clickhouse_backend,
    clickhouse_test_dsn,
    journey_row,
    marker_row,
    sample_bundle,
    unique_database,
)

PARTITIONS = 4
USING_SERVER = bool(os.environ.get("CLICKHOUSE_URL"))


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-writer") / "clickhouse"


@pytest.fixture(params=[clickhouse_backend()])
def target(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[tuple[str, str]]:
    """(dsn, database): a fresh migrated database; no client is left open (chdb: one path per process)."""
    dsn, database = clickhouse_test_dsn(chdb_dir), unique_database("sinkwriter")
    client = connect(dsn)
    migrate(client, database)
    client.close()
    yield dsn, database
    client = connect(dsn)
    client.command(f"DROP DATABASE IF EXISTS {database}")
    client.close()


@pytest.fixture
def topic(make_topics: Callable[..., list[str]]) -> str:
    return make_topics("out", partitions=PARTITIONS)[0]


def config(broker: LocalBroker, topic: str, dsn: str, database: str, **overrides: Any) -> WriterConfig:
    values: dict[str, Any] = dict(
        bootstrap=broker.bootstrap,
        topic=topic,
        group_id=f"writer-{uuid.uuid4().hex[:8]}",
        dsn=dsn,
        database=database,
        batch_rows=400,
        batch_seconds=0.2,
        max_retry_s=1.0,
        session_timeout_s=3.0,
        port=None,
        progress_every_s=1.0,
    )
    values.update(overrides)
    return WriterConfig(**values)


# -- producing the output topic as the stream workers do --------------------------------


def workload(count: int, prefix: str = "A") -> list[tuple[str, dict[str, Any]]]:
    """(key, bundle) messages: each appointment booked, then some rescheduled (a new version, another hour)."""
    messages = []
    for i in range(count):
        appointment = f"{prefix}-{i}"
        messages.append((appointment, sample_bundle(appointment, 1, scheduled_start=T0 + (i % 10) * HOUR_MS)))
    for i in range(0, count, 3):
        appointment = f"{prefix}-{i}"
        moved = journey_row(appointment, 2, scheduled_start=T0 + (i % 7 + 20) * HOUR_MS, reschedule_count=1)
        messages.append((appointment, {"appointment_journeys": [moved]}))
    return messages


def produce(broker: LocalBroker, topic: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    for key, bundle in messages:
        producer.send(topic, key=key.encode(), value=orjson.dumps(bundle))
    producer.flush()
    producer.close()


def produce_markers(broker: LocalBroker, topic: str, marker_id: str) -> int:
    """One marker per output partition, as a worker ends an input; returns the rows to expect."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False)
    for partition in range(PARTITIONS):
        producer.send(topic, partition=partition, value=orjson.dumps({"pipeline_markers": [marker_row(marker_id, 0)]}))
    producer.flush()
    producer.close()
    return PARTITIONS


def check_contents(client: Client, database: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Exactly the latest version of every appointment, every child row once, site_hourly consistent."""
    expected: dict[str, dict[str, Any]] = {}
    children: dict[str, set[tuple[Any, ...]]] = {
        t: set() for t in ("stage_intervals", "queue_waits", "friction_events", "events")
    }
    for _, bundle in messages:
        for row in bundle.get("appointment_journeys", []):
            if row["version"] >= expected.get(row["appointment_id"], {"version": -1})["version"]:
                expected[row["appointment_id"]] = row
        for table, keys in children.items():
            keys.update(_child_key(table, row) for row in bundle.get(table, []))
    stored = client.query(
        f"SELECT appointment_id, version, toUnixTimestamp64Milli(scheduled_start)"
        f" FROM {database}.appointment_journeys FINAL"
    ).result_rows
    assert len(stored) == len(expected)
    assert {a: (v, s) for a, v, s in stored} == {a: (r["version"], r["scheduled_start"]) for a, r in expected.items()}
    for table, keys in children.items():
        assert client.query(f"SELECT count() FROM {database}.{table} FINAL").result_rows[0][0] == len(keys), table
    hourly = client.query(
        f"SELECT site_id, department, toUnixTimestamp(hour), appointments FROM {database}.site_hourly FINAL"
        " WHERE appointments > 0"
    ).result_rows
    truth = client.query(
        f"SELECT site_id, department, toUnixTimestamp(toStartOfHour(assumeNotNull(scheduled_start))), count()"
        f" FROM {database}.appointment_journeys FINAL GROUP BY 1, 2, 3"
    ).result_rows
    assert sorted(map(tuple, hourly)) == sorted(map(tuple, truth))
    assert sum(n for *_, n in hourly) == len(expected)


def _child_key(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    keys = {
        "stage_intervals": ("appointment_id", "stage"),
        "queue_waits": ("appointment_id", "queue", "wait_key"),
        "friction_events": ("appointment_id", "rule", "hit_key"),
        "events": ("source", "event_id"),
    }[table]
    return tuple(row[k] for k in keys)


def committed_offsets(broker: LocalBroker, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- tests ------------------------------------------------------------------------------


def test_writer_end_to_end_with_http_endpoints(broker: LocalBroker, topic: str, target: tuple[str, str]) -> None:
    dsn, database = target
    messages = workload(300)
    produce(broker, topic, messages)
    expected_markers = produce_markers(broker, topic, "m-e2e")
    cfg = config(broker, topic, dsn, database, port=0, host="127.0.0.1")

    async def scenario() -> None:
        writer = SinkWriter(cfg)
        task = asyncio.create_task(writer.run())
        reader = connect(dsn)
        try:
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-e2e"), expected_markers, 60)
            port = writer.http_port
            assert port
            health = await asyncio.to_thread(http_get, port, "/healthz")
            ready = await asyncio.to_thread(http_get, port, "/readyz")
            metrics = (await asyncio.to_thread(http_get, port, "/metrics"))[1].decode()
            query = await asyncio.to_thread(
                http_get,
                port,
                "/query?format=JSONEachRow&query="
                + urllib.parse.quote(f"SELECT count() AS n FROM {database}.appointment_journeys FINAL"),
            )
            refused = await asyncio.to_thread(http_get, port, "/query?query=" + urllib.parse.quote("DROP DATABASE x"))
            assert health[0] == 200 and ready[0] == 200
            assert orjson.loads(ready[1])["assigned_partitions"] == PARTITIONS
            assert f'journeys_writer_rows_written_total{{table="appointment_journeys"}} {len(messages)}' in metrics
            assert 'journeys_writer_rows_written_total{table="pipeline_markers"} 4' in metrics
            assert "journeys_writer_last_commit_timestamp_seconds 0\n" not in metrics
            assert query[0] == 200 and orjson.loads(query[1])["n"] in (300, "300")
            assert refused[0] == 400
            # markers carry the partition they came through
            partitions = reader.query(
                f"SELECT output_partition FROM {database}.pipeline_markers FINAL WHERE marker_id = 'm-e2e' ORDER BY 1"
            ).result_rows
            assert [p for (p,) in partitions] == list(range(PARTITIONS))
            check_contents(reader, database, messages)
        finally:
            reader.close()
            await writer.stop()
            await task

    asyncio.run(scenario())
    offsets = committed_offsets(broker, cfg.group_id)
    assert sum(offsets.values()) == len(messages) + expected_markers  # everything committed, nothing more


def test_nothing_committed_while_clickhouse_is_unreachable(
    broker: LocalBroker, topic: str, target: tuple[str, str]
) -> None:
    dsn, database = target
    messages = workload(60)
    produce(broker, topic, messages)
    expected_markers = produce_markers(broker, topic, "m-down")
    down = config(
        broker, topic, f"http://default:@127.0.0.1:{free_port()}", database, port=0, host="127.0.0.1", max_retry_s=0.5
    )

    async def unreachable() -> None:
        writer = SinkWriter(down)
        task = asyncio.create_task(writer.run())
        try:
            await eventually(lambda: writer.metrics.errors["insert"] >= 3, 60, "three failed inserts")
            assert writer.metrics.last_commit_time == 0
            assert writer.metrics.buffered_rows > 0
            port = writer.http_port
            assert port
            assert (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 503
            metrics = (await asyncio.to_thread(http_get, port, "/metrics"))[1].decode()
            assert (
                "journeys_writer_ready 0" in metrics and 'journeys_writer_errors_total{kind="insert"} 0' not in metrics
            )
        finally:
            await writer.stop()
            await task

    asyncio.run(unreachable())
    assert committed_offsets(broker, down.group_id) == {}

    # The same group with a working ClickHouse gets every record: nothing was lost.
    up = config(broker, topic, dsn, database, group_id=down.group_id)

    async def recovered() -> None:
        writer = SinkWriter(up)
        task = asyncio.create_task(writer.run())
        reader = connect(dsn)
        try:
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-down"), expected_markers, 60)
            check_contents(reader, database, messages)
        finally:
            reader.close()
            await writer.stop()
            await task

    asyncio.run(recovered())


def test_pauses_while_inserts_fail_and_commits_after_recovery(
    broker: LocalBroker, topic: str, target: tuple[str, str]
) -> None:
    dsn, database = target
    first, second = workload(40, "F"), workload(40, "S")
    produce(broker, topic, first)
    failing = threading.Event()
    failing.set()
    cfg = config(broker, topic, dsn, database, max_retry_s=0.3)

    class FlakyWriter(SinkWriter):
        def _write(self, bundles: list[dict[str, Any] | bytes], origins: list[Origin]) -> tuple[dict[str, int], WriteFaults]:
            if failing.is_set():
                raise ConnectionError("ClickHouse is down (simulated)")
            return super()._write(bundles, origins)

    async def scenario() -> None:
        writer = FlakyWriter(cfg)
        task = asyncio.create_task(writer.run())
        reader = connect(dsn)
        try:
            await eventually(lambda: writer.metrics.errors["insert"] >= 2, 60, "failing inserts")
            read_while_failing = writer.metrics.messages
            await asyncio.to_thread(produce, broker, topic, second)
            await asyncio.sleep(2.0)
            assert writer.metrics.messages == read_while_failing  # paused: the new records wait in Kafka
            assert committed_offsets(broker, cfg.group_id) == {}
            failing.clear()
            expected = await asyncio.to_thread(produce_markers, broker, topic, "m-flaky")
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-flaky"), expected, 60)
            check_contents(reader, database, first + second)
            assert writer.metrics.last_commit_time > 0
        finally:
            reader.close()
            await writer.stop()
            await task

    asyncio.run(scenario())
    assert sum(committed_offsets(broker, cfg.group_id).values()) == len(first) + len(second) + PARTITIONS


def test_two_writers_in_one_group_share_the_work(broker: LocalBroker, topic: str, target: tuple[str, str]) -> None:
    dsn, database = target
    first, second = workload(150, "P"), workload(150, "Q")
    produce(broker, topic, first)
    group = f"writers-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        one, two = SinkWriter(config(broker, topic, dsn, database, group_id=group)), None
        tasks = [asyncio.create_task(one.run())]
        reader = connect(dsn)
        try:
            await eventually(lambda: one.metrics.batches > 0, 60, "the first writer's first batch")
            two = SinkWriter(config(broker, topic, dsn, database, group_id=group))
            tasks.append(asyncio.create_task(two.run()))
            await eventually(lambda: two.metrics.assigned_partitions > 0, 60, "a rebalance onto the second writer")
            await asyncio.to_thread(produce, broker, topic, second)
            expected = await asyncio.to_thread(produce_markers, broker, topic, "m-pair")
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-pair"), expected, 60)
            assert one.metrics.assigned_partitions + two.metrics.assigned_partitions == PARTITIONS
            assert one.metrics.rows_written["appointment_journeys"] and two.metrics.rows_written["appointment_journeys"]
            check_contents(reader, database, first + second)
        finally:
            reader.close()
            for writer in (one, two):
                if writer is not None:
                    await writer.stop()
            await asyncio.gather(*tasks)

    asyncio.run(scenario())


def _metric(port: int, name: str) -> float:
    try:
        _, body = http_get(port, "/metrics")
    except OSError:
        return 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _start_writer_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "writer"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def test_killed_writer_restarts_without_loss_or_duplicates(broker: LocalBroker, topic: str, tmp_path: Path) -> None:
    # A process of its own: SIGKILL is the real crash. It gets its own chdb directory,
    # which this process opens only after the writer is gone (one process per directory).
    dsn = os.environ.get("CLICKHOUSE_URL") or f"chdb://{tmp_path / 'clickhouse'}"
    database = unique_database("sinkkill")
    port = free_port()
    env = {
        **os.environ,
        "JOURNEYS_BOOTSTRAP": broker.bootstrap,
        "JOURNEYS_TOPIC_OUTPUT": topic,
        "JOURNEYS_CONSUMER_GROUP": f"kill-{uuid.uuid4().hex[:6]}",
        "JOURNEYS_CLICKHOUSE_DSN": dsn,
        "JOURNEYS_CLICKHOUSE_DATABASE": database,
        "JOURNEYS_SINK_BATCH_ROWS": "300",
        "JOURNEYS_SINK_BATCH_SECONDS": "0.1",
        "JOURNEYS_SESSION_TIMEOUT_S": "3",
        "JOURNEYS_WRITER_PORT": str(port),
        "JOURNEYS_LOG_FORMAT": "console",
    }
    log = tmp_path / "writer.log"
    first, second = workload(1500, "K"), workload(300, "L")
    produce(broker, topic, first)

    crashed = _start_writer_process(env, log)
    try:
        deadline = time.monotonic() + 60
        while _metric(port, "journeys_writer_batches_total") < 2:
            assert crashed.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        written_before_kill = _metric(port, 'journeys_writer_rows_written_total{table="appointment_journeys"}')
        crashed.send_signal(signal.SIGKILL)
    finally:
        crashed.wait(10)
    assert 0 < written_before_kill < len(first), "the kill should land mid-run"

    produce(broker, topic, second)
    expected = produce_markers(broker, topic, "m-kill")
    restarted = _start_writer_process(env, log)
    try:
        deadline = time.monotonic() + 90
        while _metric(port, 'journeys_writer_rows_written_total{table="pipeline_markers"}') < expected:
            assert restarted.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        if not USING_SERVER:
            # chdb is held by the writer: `journeys query` reads through its /query endpoint.
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "query",
                    "--format",
                    "csv",
                    "SELECT count() FROM appointment_journeys FINAL",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines()[-1] == str(len({key for key, _ in first + second}))
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if restarted.poll() is None:
            restarted.kill()
            restarted.wait(10)
    assert "writer_stopped" in log.read_text()

    client = connect(dsn)
    try:
        assert wait_for_marker(lambda: marker_rows(client, database, "m-kill"), expected, timeout=5) == expected
        check_contents(client, database, first + second)
    finally:
        if USING_SERVER:
            client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()
