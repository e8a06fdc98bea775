"""Faults and bad input never stop the writer or lose data: a real engine, no stand-ins.

The engine is chdb unless ``CLICKHOUSE_URL`` names a server (see tests/test_sink_rows.py).
What is checked: values the conversion refuses (a DateTime64 before 1900, a UInt out of
range, a string in a number column, a Map with a wrong value type) and rows the engine
itself refuses (a CHECK constraint: ClickHouse's own verdict, found by splitting the
insert) land in ``rejected_rows`` with the reason and their message, the rest of the
batch lands, and the writer goes on consuming; a booking in 1969 (the issue: the
site_hourly recompute refused its hour and the writer retried forever) is written and
only its bucket is skipped; a redelivered batch does not double a rejected row; a
ClickHouse that cannot be reached is still retried with backoff and loses nothing;
``/readyz`` turns 503 while the broker is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from kafka import KafkaProducer

from schemas.timestamps import HOUR_MS
from sinks.client import Client, connect
from sinks.faults import Fault, classify
from sinks.markers import marker_rows
from sinks.migrate import migrate
from sinks.rows import REJECTED_TABLE, Origin, RowWriter
from sinks.writer import SinkWriter
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
from tests.test_sink_writer import (
    PARTITIONS,
    check_contents,
    committed_offsets,
    config,
    eventually,
    http_get,
    produce,
    produce_markers,
    workload,
)

YEAR_MS = 365 * 24 * HOUR_MS
# A table whose rows ClickHouse itself refuses: the conversion passes any Int32, the
# engine's CHECK does not (VIOLATED_CONSTRAINT).
CHECKED_DDL = (
    "CREATE TABLE {db}.checked (id UInt32, v Int32, CONSTRAINT v_small CHECK v < 100)"
    " ENGINE = ReplacingMergeTree ORDER BY id"
)


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-faults") / "clickhouse"


@pytest.fixture(params=[clickhouse_backend()])
def target(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[tuple[str, str]]:
    """(dsn, database): migrated, with the ``checked`` table; no client left open (chdb: one path per process)."""
    dsn, database = clickhouse_test_dsn(chdb_dir), unique_database("sinkfaults")
    client = connect(dsn)
    migrate(client, database)
    client.command(CHECKED_DDL.format(db=database))
    client.close()
    yield dsn, database
    client = connect(dsn)
    client.command(f"DROP DATABASE IF EXISTS {database}")
    client.close()


@pytest.fixture
def client(target: tuple[str, str]) -> Iterator[Client]:
    ch = connect(target[0])
    yield ch
    ch.close()


def rejected(client: Client, database: str, final: bool = True) -> list[dict[str, Any]]:
    result = client.query(
        f"SELECT table, reason, row, row_truncated, row_bytes, output_topic, output_partition, output_offset,"
        f" row_index FROM {database}.{REJECTED_TABLE} {'FINAL' if final else ''}"
        " ORDER BY output_topic, output_partition, output_offset, table, row_index"
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def scalar(client: Client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


# -- classification (real errors where the engine or the network gives them) -------------


def test_classify_real_errors(client: Client, target: tuple[str, str]) -> None:
    database = target[1]
    with pytest.raises(DatabaseError) as refused:
        client.insert(f"{database}.checked", [[1, 500]], column_names=["id", "v"])
    assert refused.value.code == 469 and classify(refused.value) is Fault.DATA
    with pytest.raises(DatabaseError) as hour_1969:
        client.query("SELECT arrayJoin({h:Array(UInt32)})", parameters={"h": [-18000]})
    assert classify(hour_1969.value) is Fault.DATA  # the error: CANNOT_READ_ARRAY_FROM_TEXT
    with pytest.raises(Exception) as down:
        connect(f"http://default:@127.0.0.1:{free_port()}?connect_timeout=1").command("SELECT 1")
    assert classify(down.value) is Fault.TRANSIENT
    # Server-side conditions chdb will not produce on demand: the codes as a server sends them.
    for code, name in ((252, "TOO_MANY_PARTS"), (241, "MEMORY_LIMIT_EXCEEDED"), (159, None), (745, None)):
        assert classify(DatabaseError(f"Code: {code}", code=code, name=name)) is Fault.TRANSIENT, code
    for code, name in ((53, None), (321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"), (20, None), (9999, "CANNOT_PARSE_X")):
        assert classify(DatabaseError(f"Code: {code}", code=code, name=name)) is Fault.DATA, code
    assert classify(DatabaseError("HTTP driver received HTTP status 503")) is Fault.TRANSIENT
    assert classify(KeyError("a bug of ours")) is Fault.DATA


# -- RowWriter: bad rows set aside, the rest written -------------------------------------


def bad_batch() -> tuple[list[dict[str, Any]], list[Origin]]:
    """Three messages: good rows, four rows the conversion refuses, and 50 ``checked`` rows of which the engine refuses 3."""
    bundles: list[dict[str, Any]] = [
        sample_bundle("A-1"),
        {
            "appointment_journeys": [
                journey_row("B-1850", scheduled_start=T0 - 157 * YEAR_MS),  # before 1900: DateTime64 cannot hold it
                journey_row("B-uint", reschedule_count=2**32),
                journey_row("B-str", duration_min="thirty"),
                journey_row("B-map", queue_abandoned={"lab": "yes"}),
                journey_row("A-2"),
            ]
        },
        {"checked": [{"id": i, "v": 500 if i in (0, 17, 49) else i} for i in range(50)]},
    ]
    return bundles, [Origin("out", 1, 10), Origin("out", 1, 11), Origin("out", 2, 5)]


def test_bad_rows_land_in_rejected_rows_and_the_rest_is_written(client: Client, target: tuple[str, str]) -> None:
    database = target[1]
    bundles, origins = bad_batch()
    writer = RowWriter(client, database)
    inserts: list[str] = []
    original = client.insert

    def counting(table: str, *args: Any, **kwargs: Any) -> Any:
        inserts.append(table)  # counts the statements only; every one goes to the engine
        return original(table, *args, **kwargs)

    client.insert = counting  # type: ignore[method-assign,assignment]
    try:
        counts = writer.write(bundles, origins)
    finally:
        client.insert = original  # type: ignore[method-assign]

    assert counts["appointment_journeys"] == 2 and counts["checked"] == 47 and counts["events"] == 1
    ids = {a for (a,) in client.query(f"SELECT appointment_id FROM {database}.appointment_journeys FINAL").result_rows}
    assert ids == {"A-1", "A-2"}
    assert scalar(client, f"SELECT count() FROM {database}.checked") == 47
    assert dict(writer.last_faults.rejected) == {"appointment_journeys": 4, "checked": 3}
    assert dict(writer.last_faults.refused_inserts) == {"checked": 1}
    # 3 bad rows among 50: one failed whole insert, then about 2*3*log2(50/3) halves, not 50 single rows.
    assert inserts.count("checked") <= 1 + 2 * 3 * 5, inserts.count("checked")
    # markers-last and dead letters: the rejected rows go in once, after the data tables.
    assert inserts.count(REJECTED_TABLE) == 1 and inserts.index(REJECTED_TABLE) > inserts.index("checked")

    stored = rejected(client, database)
    assert [(r["table"], r["output_partition"], r["output_offset"], r["row_index"]) for r in stored] == [
        ("appointment_journeys", 1, 11, 0),
        ("appointment_journeys", 1, 11, 1),
        ("appointment_journeys", 1, 11, 2),
        ("appointment_journeys", 1, 11, 3),
        ("checked", 2, 5, 0),
        ("checked", 2, 5, 17),
        ("checked", 2, 5, 49),
    ]
    reasons = [r["reason"] for r in stored]
    assert "timestamp out of range" in reasons[0] and "scheduled_start" in reasons[0]
    assert "out of range for UInt32" in reasons[1] and "duration_min" in reasons[2] and "queue_abandoned" in reasons[3]
    assert all("VIOLATED_CONSTRAINT" in reason for reason in reasons[4:])
    assert [json.loads(r["row"]) for r in stored[:4]] == bundles[1]["appointment_journeys"][:4]
    assert json.loads(stored[5]["row"]) == {"id": 17, "v": 500}
    assert all(r["output_topic"] == "out" and not r["row_truncated"] for r in stored)

    writer.write(bundles, origins)  # redelivered: the same rejected rows, replaced, not doubled
    assert len(rejected(client, database)) == 7
    assert len(rejected(client, database, final=False)) == 14  # physically twice, one key each
    assert scalar(client, f"SELECT count() FROM {database}.checked FINAL") == 47


def test_a_marker_waits_for_the_rejected_rows_before_it(client: Client, target: tuple[str, str]) -> None:
    database = target[1]
    writer = RowWriter(client, database)
    bad_marker = marker_row("m-bad", input_partition=-1, output_partition=0)  # UInt32 cannot hold -1
    bundles = [
        {"appointment_journeys": [journey_row("B-1", reschedule_count=-1)]},
        {"pipeline_markers": [bad_marker, marker_row("m-ok", 0, output_partition=0)]},
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
    assert order == [REJECTED_TABLE, "pipeline_markers"]
    assert marker_rows(client, database, "m-ok") == 1 and marker_rows(client, database, "m-bad") == 0
    assert [(r["table"], r["output_offset"]) for r in rejected(client, database)] == [
        ("appointment_journeys", 0),
        ("pipeline_markers", 1),
    ]


def test_huge_rows_are_cut_and_flagged(client: Client, target: tuple[str, str]) -> None:
    database = target[1]
    RowWriter(client, database).write([{"no_such_table": [{"blob": "é" * 100_000}]}])
    (stored,) = rejected(client, database)
    assert (stored["table"], stored["reason"], stored["row_truncated"]) == ("no_such_table", "unknown table", 1)
    assert stored["row_bytes"] == len(orjson.dumps({"blob": "é" * 100_000})) and len(stored["row"].encode()) <= 65536


def test_a_booking_in_1969_is_written_and_only_its_bucket_skipped(client: Client, target: tuple[str, str]) -> None:
    # The issue: site_hourly passes hours as Array(UInt32); 1969 is negative, the engine
    # refused the whole recompute and the writer retried the batch forever.
    database = target[1]
    writer = RowWriter(client, database)
    early = T0 - 57 * YEAR_MS + 5 * HOUR_MS  # 1969-01-17, a valid DateTime64
    rows = [journey_row(f"A-{i}", scheduled_start=T0 + (i % 5) * HOUR_MS) for i in range(40)]
    rows.insert(17, journey_row("EARLY", scheduled_start=early))
    counts = writer.write([{"appointment_journeys": rows}])
    assert counts == {"appointment_journeys": 41, "site_hourly": 5}
    assert writer.last_faults.skipped_buckets == 1 and dict(writer.last_faults.refused_inserts) == {"site_hourly": 1}
    hourly = client.query(
        f"SELECT toUnixTimestamp(hour) * 1000, appointments FROM {database}.site_hourly FINAL ORDER BY 1"
    ).result_rows
    assert hourly == [(T0 + h * HOUR_MS, 8) for h in range(5)]
    assert rejected(client, database) == []  # the row is fine: only the rollup cannot hold its hour
    # Rescheduled into a representable hour, it is counted there.
    counts = writer.write([{"appointment_journeys": [journey_row("EARLY", 2, scheduled_start=T0)]}])
    assert counts["site_hourly"] == 1 and writer.last_faults.skipped_buckets == 1  # its 1969 bucket, read back
    assert scalar(client, f"SELECT appointments FROM {database}.site_hourly FINAL WHERE hour = toDateTime({T0 // 1000})") == 9


# -- the Kafka writer ---------------------------------------------------------------------


def produce_at(broker: LocalBroker, topic: str, value: bytes, partition: int) -> int:
    """Send one message to ``partition``; its offset."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False)
    try:
        return int(producer.send(topic, partition=partition, value=value).get(timeout=30).offset)
    finally:
        producer.close()


def test_writer_sets_bad_rows_aside_and_keeps_consuming(
    broker: LocalBroker, make_topics: Any, target: tuple[str, str]
) -> None:
    dsn, database = target
    topic = make_topics("out", partitions=PARTITIONS)[0]
    first = workload(60, "G")
    produce(broker, topic, first)
    bad = {
        "appointment_journeys": [journey_row("BAD-1850", scheduled_start=T0 - 157 * YEAR_MS)],
        "checked": [{"id": 1, "v": 1}, {"id": 2, "v": 1000}],
    }
    bad_offset = produce_at(broker, topic, orjson.dumps(bad), partition=2)
    junk_offset = produce_at(broker, topic, b"not json", partition=3)
    markers = produce_markers(broker, topic, "m-bad-1")
    cfg = config(broker, topic, dsn, database, port=0, host="127.0.0.1")

    async def scenario() -> None:
        writer = SinkWriter(cfg)
        task = asyncio.create_task(writer.run())
        reader = connect(dsn)
        try:
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-bad-1"), markers, 60)
            stored = rejected(reader, database)
            assert [(r["table"], r["output_partition"], r["output_offset"], r["row_index"]) for r in stored] == [
                ("appointment_journeys", 2, bad_offset, 0),
                ("checked", 2, bad_offset, 1),
                ("?", 3, junk_offset, 0),
            ]
            assert stored[2]["row"] == "not json" and all(r["output_topic"] == topic for r in stored)
            assert scalar(reader, f"SELECT count() FROM {database}.checked FINAL") == 1
            check_contents(reader, database, first)
            assert writer.metrics.rows_rejected == {"appointment_journeys": 1, "checked": 1, "?": 1}
            assert writer.metrics.failures["data"] == 1  # the checked insert, split to find its bad row
            assert writer.metrics.failures["transient"] == 0
            port = writer.http_port
            assert port
            metrics = (await asyncio.to_thread(http_get, port, "/metrics"))[1].decode()
            assert 'journeys_writer_rows_rejected_total{table="checked"} 1' in metrics
            assert 'journeys_writer_failures_total{kind="data"} 1' in metrics
            # It goes on: a later batch lands.
            second = workload(30, "H")
            await asyncio.to_thread(produce, broker, topic, second)
            expected = await asyncio.to_thread(produce_markers, broker, topic, "m-bad-2")
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-bad-2"), expected, 60)
            assert scalar(reader, f"SELECT count() FROM {database}.appointment_journeys FINAL WHERE appointment_id LIKE 'H-%'") == 30
        finally:
            reader.close()
            await writer.stop()
            await task

    asyncio.run(scenario())
    total = len(first) + 2 + markers + len(workload(30, "H")) + PARTITIONS
    assert sum(committed_offsets(broker, cfg.group_id).values()) == total  # everything committed, bad ones too

    # Another group reads it all again (a redelivery): the rejected rows are not doubled.
    again = config(broker, topic, dsn, database)

    async def redelivered() -> None:
        writer = SinkWriter(again)
        task = asyncio.create_task(writer.run())
        try:
            await eventually(lambda: sum(committed_offsets(broker, again.group_id).values()) == total, 60, "redelivery")
        finally:
            await writer.stop()
            await task
        assert writer.metrics.rows_rejected == {"appointment_journeys": 1, "checked": 1, "?": 1}

    asyncio.run(redelivered())
    reader = connect(dsn)
    try:
        assert len(rejected(reader, database)) == 3
    finally:
        reader.close()


def test_unreachable_clickhouse_is_retried_and_sets_nothing_aside(
    broker: LocalBroker, make_topics: Any, target: tuple[str, str]
) -> None:
    dsn, database = target
    topic = make_topics("out", partitions=PARTITIONS)[0]
    messages = workload(40, "D")
    produce(broker, topic, messages)
    produce_at(broker, topic, orjson.dumps({"checked": [{"id": 1, "v": 1000}]}), partition=0)
    markers = produce_markers(broker, topic, "m-down-bad")
    down = config(broker, topic, f"http://default:@127.0.0.1:{free_port()}", database, max_retry_s=0.5)

    async def unreachable() -> None:
        writer = SinkWriter(down)
        task = asyncio.create_task(writer.run())
        try:
            await eventually(lambda: writer.metrics.failures["transient"] >= 3, 60, "three transient failures")
            assert writer.metrics.failures["data"] == 0 and not writer.metrics.rows_rejected
            assert writer.metrics.last_commit_time == 0 and not writer.metrics.ready
        finally:
            await writer.stop()
            await task

    asyncio.run(unreachable())
    assert committed_offsets(broker, down.group_id) == {}

    async def recovered() -> None:
        writer = SinkWriter(config(broker, topic, dsn, database, group_id=down.group_id))
        task = asyncio.create_task(writer.run())
        reader = connect(dsn)
        try:
            await asyncio.to_thread(wait_for_marker, lambda: marker_rows(reader, database, "m-down-bad"), markers, 60)
            check_contents(reader, database, messages)
            assert [(r["table"], r["output_partition"]) for r in rejected(reader, database)] == [("checked", 0)]
        finally:
            reader.close()
            await writer.stop()
            await task

    asyncio.run(recovered())


def test_readyz_turns_503_while_the_broker_is_gone(target: tuple[str, str]) -> None:
    dsn, database = target
    topic = f"test.readyz.{uuid.uuid4().hex[:8]}"
    own = LocalBroker(topics=[topic], partitions=2).start()  # ours to stop: the session broker stays up
    try:

        async def scenario() -> None:
            cfg = config(own, topic, dsn, database, port=0, host="127.0.0.1")
            writer = SinkWriter(cfg)
            task = asyncio.create_task(writer.run())
            try:
                await eventually(lambda: writer.metrics.ready and writer.metrics.assigned_partitions == 2, 60, "ready")
                port = writer.http_port
                assert port
                status, body = await asyncio.to_thread(http_get, port, "/readyz")
                assert status == 200 and orjson.loads(body)["kafka_ok"] is True
                await asyncio.to_thread(own.stop)
                gone = time.monotonic()
                await eventually(lambda: not writer.metrics.ready, 3 * cfg.session_timeout_s + 10, "not ready")
                status, body = await asyncio.to_thread(http_get, port, "/readyz")
                state = orjson.loads(body)
                assert status == 503 and state["kafka_ok"] is False and state["clickhouse_ok"] is True
                assert time.monotonic() - gone >= 3 * cfg.session_timeout_s - 1  # not on the first slow fetch
            finally:
                await writer.stop()
                await task

        asyncio.run(scenario())
    finally:
        own.stop()

