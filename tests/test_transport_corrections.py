"""Why ``streams/transport.py`` corrects the consumer, shown on each broker.

Correction 1 of ``streams.transport`` exists because aiokafka's ``seek_to_committed``
leaves a partition its group never committed wherever the fetcher already is. That is
the client's behaviour, not the broker's: this test shows it on tansu and on Apache
Kafka alike (the ``broker`` fixture runs it on both), so the correction stays for both,
and shows that the correction's seek puts such a partition back to its first record.
The last test shows why a batch waits for the broker's acknowledgement of its table writes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

pytestmark = pytest.mark.broker


async def _fetched_then_sought(bootstrap: str, topic: str, correct: bool) -> tuple[int, int, dict[Any, Any]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, f"record-{n}".encode(), partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"never-committed-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        fetched = 0
        while fetched < 10:  # the fetcher runs ahead, as it does during Faust's table recovery
            batches = await consumer.getmany(tp, timeout_ms=2000)
            fetched += sum(len(records) for records in batches.values())
        committed = await consumer.seek_to_committed(tp)
        if correct:  # what streams.transport.Consumer.seek_to_committed adds
            uncommitted = [p for p, offset in committed.items() if not offset]
            await consumer.seek_to_beginning(*uncommitted)
        return fetched, await consumer.position(tp), committed
    finally:
        await consumer.stop()


def test_seek_to_committed_leaves_a_never_committed_partition_where_the_fetcher_is(
    broker: Any, make_topics: Any
) -> None:
    (topic,) = make_topics("uncommitted", partitions=1)
    fetched, position, committed = asyncio.run(_fetched_then_sought(broker.bootstrap, topic, correct=False))
    assert fetched == 10 and not committed[TopicPartition(topic, 0)]
    # Nothing was committed, yet the position stays after the ten fetched records: had
    # Faust thrown those away (it does, after a rebalance), they were skipped for good.
    assert position == 10


def test_the_correction_reads_such_a_partition_from_its_first_record(broker: Any, make_topics: Any) -> None:
    (topic,) = make_topics("uncommitted", partitions=1)
    _, position, _ = asyncio.run(_fetched_then_sought(broker.bootstrap, topic, correct=True))
    assert position == 0


async def _unacknowledged_after_drain(bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """40 table writes of a batch (``send_soon``, as Faust's tables send changelog records)
    to a broker whose produce requests are slow; the indexes of those the broker had not
    acknowledged when :func:`drain_changelog_buffer` returned."""
    import aiokafka.producer.sender as sender
    import faust

    from streams.transport import drain_changelog_buffer

    send_request = sender.SendProduceReqHandler.do

    async def slow(self: Any, node_id: Any) -> Any:  # a broker under load: 50 ms a produce request
        await asyncio.sleep(0.05)
        return await send_request(self, node_id)

    monkeypatch.setattr(sender.SendProduceReqHandler, "do", slow)
    # One record per batch, as the worker's changelog writes are (producer_max_batch_size=1):
    # the buffer's task then waits inside aiokafka for room, holding a record no flush sees.
    app = faust.App(f"drain-{uuid.uuid4().hex[:8]}", broker=f"journeys+kafka://{bootstrap}",
                    producer_max_batch_size=1, producer_acks=-1, store="memory://", web_enabled=False)
    changelog = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    await app.maybe_start_producer()
    try:
        futures = [changelog.send_soon(key=b"k%d" % i, value=b"state", partition=(i // 2) % 4) for i in range(40)]
        await drain_changelog_buffer(app)
        return [i for i, future in enumerate(futures) if not future.done()]
    finally:
        await app.producer.stop()


def test_the_batch_waits_until_the_broker_has_every_table_write(
    broker: Any, make_topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``drain_changelog_buffer``, before a batch's events are acknowledged: waiting only
    until Faust's changelog buffer was empty left out the records its task had taken out
    but aiokafka not yet taken in (the last 1-5 of 40 here, every time): offsets committed
    then could outlive that state after a kill -9. The batch now waits for the broker's
    acknowledgement of every record it produced."""
    (topic,) = make_topics("changelog", partitions=4)
    assert asyncio.run(_unacknowledged_after_drain(broker.bootstrap, topic, monkeypatch)) == []
