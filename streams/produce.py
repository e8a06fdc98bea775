"""Send events to Kafka: each event's raw bytes to its family's topic, keyed by ``appointment_id``.

The bytes are sent exactly as given (never re-serialised), so what the pipeline reads
is what the file held. Only the routing fields are parsed here; full validation is the
pipeline's job, which dead-letters an invalid event with the topic/partition/offset it
read it from. A line that cannot be routed at all (broken JSON, no or unknown
``event_type``) is not dropped: it goes to the dead-letter topic with headers saying
why and where it came from, and is counted.

>>> from streams.produce import produce_events
>>> result = produce_events([b'{"event_type": "wait.started", "appointment_id": "a1"}'],
...                         "127.0.0.1:9092", progress=False)  # doctest: +SKIP
>>> result.counts  # doctest: +SKIP
{'journey.waits': 1}

Dead-letter headers of an unroutable line: ``reason`` and ``detail`` (as in
:class:`schemas.decode.Rejected`), ``origin_file`` and ``origin_line`` (where it came
from), ``producer`` = ``journeys-produce``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from pydantic import BaseModel

from runtime.logs import get_logger
from schemas.decode import Rejected
from schemas.eventfile import route
from schemas.events import DEFAULT_DEADLETTER_TOPIC, DEFAULT_TOPICS, Family

log = get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]
EventLike = bytes | bytearray | str | Mapping[str, Any] | BaseModel | tuple[int, bytes]

PRODUCER_NAME = b"journeys-produce"
_PROGRESS_STEP = 1024  # tqdm.update per event would cost more than the send itself


def quiet_kafka_clients(level: int = logging.CRITICAL) -> None:
    """Silence kafka-python and aiokafka below ``level``: they log every connection attempt; we report failures ourselves."""
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(level)


class ProduceError(RuntimeError):
    """Some messages were not acknowledged by the broker."""


@dataclass
class ProduceResult:
    """Messages acknowledged per topic; ``unroutable`` of them went to the dead-letter topic."""

    counts: dict[str, int] = field(default_factory=dict)
    unroutable: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, BaseModel):
        return item.model_dump_json(exclude_none=True).encode("utf-8")
    if isinstance(item, Mapping):
        return orjson.dumps(item)
    raise TypeError(f"cannot send {type(item).__name__} as an event")


class EventProducer:
    """A fast batching Kafka producer for events and, through :meth:`send_raw`, anything else.

    Synchronous API over aiokafka on a private event loop (do not use it from inside a
    running event loop; call it from a thread, e.g. ``asyncio.to_thread``). It builds
    record batches per topic-partition itself with aiokafka's C batch builder, about
    ten times faster than a send() per message. The partition of a keyed message is
    murmur2(key), as in Kafka's Java client, so the same appointment lands on the same
    partition number in every family topic.

    ``acks=all`` and no idempotence (tansu refuses idempotent producers; the pipeline
    dedupes on (source, event_id), so a retried duplicate is harmless). A batch is sent
    when full or ``linger_ms`` after it was opened (checked when a message is added):
    call :meth:`flush` when the source goes idle. :meth:`flush` waits for every
    acknowledgement and raises :class:`ProduceError` if any batch failed.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Mapping[Family, str] = DEFAULT_TOPICS,
        deadletter_topic: str = DEFAULT_DEADLETTER_TOPIC,
        linger_ms: int = 50,
        max_batch_bytes: int = 256 * 1024,
        output_topic: str | None = None,
        **producer_config: Any,
    ) -> None:
        self.topics = dict(topics)
        self.deadletter_topic = deadletter_topic
        # No worker reads a line that has no family topic: its dead-letter row goes to the
        # writer directly on ``output_topic`` (then it is in journeys.deadletters too).
        self.output_topic = output_topic
        self._unroutable_rows: list[dict[str, Any]] = []
        self.unroutable = 0
        self._linger_s = linger_ms / 1000
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": "journeys-produce",
            "acks": "all",
            "enable_idempotence": False,
            "max_batch_size": max_batch_bytes,
            **producer_config,
        }
        self._loop = asyncio.new_event_loop()
        self._producer: Any = None
        self._partitioner: Any = None
        self._partitions: dict[str, list[int]] = {}
        self._round_robin = 0
        # (topic, partition) -> (open batch builder, its record count, when it was opened)
        self._open: dict[tuple[str, int], tuple[Any, int, float]] = {}
        self._in_flight: list[tuple[asyncio.Future[Any], str, int]] = []
        self._acked: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._first_error: BaseException | None = None
        try:
            self._loop.run_until_complete(self._start())
        except BaseException:
            self._loop.close()
            raise

    async def _start(self) -> None:
        # Imported here: aiokafka is only needed when producing. Created inside the loop
        # because aiokafka binds to the running loop.
        from aiokafka import AIOKafkaProducer
        from aiokafka.partitioner import DefaultPartitioner

        self._partitioner = DefaultPartitioner()
        self._producer = AIOKafkaProducer(**self._config)
        await self._producer.start()

    def _partitions_of(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            found = self._loop.run_until_complete(self._producer.partitions_for(topic))
            if not found:
                raise ProduceError(f"topic {topic!r} does not exist")
            partitions = self._partitions[topic] = sorted(found)
        return partitions

    def _ship(self, slot: tuple[str, int]) -> None:
        builder, count, _ = self._open.pop(slot)
        topic, partition = slot
        future = self._loop.run_until_complete(self._producer.send_batch(builder, topic, partition=partition))
        self._in_flight.append((future, topic, count))

    def send_raw(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one message as is. ``partition=None``: murmur2(key), or round robin without a key.

        The hook for control records (e.g. a marker sent to every partition) and for
        anything that is not an event.
        """
        if partition is None:
            partitions = self._partitions_of(topic)
            if key is None:
                self._round_robin += 1
                partition = partitions[self._round_robin % len(partitions)]
            else:
                partition = self._partitioner(key, partitions, partitions)
        slot = (topic, partition)
        entry = self._open.get(slot)
        if entry is None:
            entry = (self._producer.create_batch(), 0, time.monotonic())
        builder, count, opened = entry
        headers = list(headers or ())
        if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
            # Full: ship it and start a new one (an empty batch always takes one record).
            self._open[slot] = entry
            self._ship(slot)
            builder, count, opened = self._producer.create_batch(), 0, time.monotonic()
            builder.append(key=key, value=value, timestamp=None, headers=headers)
        self._open[slot] = (builder, count + 1, opened)
        if time.monotonic() - opened >= self._linger_s:
            self._ship(slot)

    def send_event(self, raw: bytes, origin_file: str | None = None, origin_line: int | None = None) -> str:
        """Route ``raw`` to its family's topic (or the dead-letter topic); return the topic."""
        verdict = route(raw)
        if isinstance(verdict, Rejected):
            headers: list[tuple[str, bytes]] = [
                ("reason", verdict.reason.encode()),
                ("detail", verdict.detail.encode("utf-8", "replace")),
                ("producer", PRODUCER_NAME),
            ]
            if origin_file is not None:
                headers.append(("origin_file", origin_file.encode("utf-8", "replace")))
            if origin_line is not None:
                headers.append(("origin_line", str(origin_line).encode()))
            self.send_raw(self.deadletter_topic, None, None, raw, headers)
            self.unroutable += 1
            if self.output_topic is not None:
                self._unroutable_rows.append({
                    "topic": f"file:{origin_file or 'input'}", "partition": 0, "offset": origin_line or 0,
                    "reason": verdict.reason, "detail": verdict.detail, "received_at": int(time.time() * 1000)})
            return self.deadletter_topic
        topic = self.topics[verdict.family]
        self.send_raw(topic, None, verdict.key, raw)
        return topic

    async def _settle(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        results = await asyncio.gather(*(future for future, _, _ in in_flight), return_exceptions=True)
        for (_, topic, count), result in zip(in_flight, results):
            if isinstance(result, BaseException):
                self._failed[topic] += count
                if self._first_error is None:
                    self._first_error = result
                    log.error("produce_failed", topic=topic, error=repr(result))
            else:
                self._acked[topic] += count

    def flush(self) -> ProduceResult:
        """Send every open batch, wait for all acknowledgements; return the counts so far."""
        rows, self._unroutable_rows = self._unroutable_rows, []
        for start in range(0, len(rows), 2000):
            assert self.output_topic is not None
            self.send_raw(self.output_topic, None, None, orjson.dumps({"deadletters": rows[start:start + 2000]}))
        for slot in list(self._open):
            self._ship(slot)
        self._loop.run_until_complete(self._settle())
        if self._first_error is not None:
            failed = sum(self._failed.values())
            raise ProduceError(f"{failed} messages were not acknowledged; first error: {self._first_error!r}")
        # Events per topic: the dead-letter rows for the writer are not events of the input.
        events = {topic: count for topic, count in self._acked.items() if topic != self.output_topic}
        return ProduceResult(counts=events, unroutable=self.unroutable)

    def close(self) -> None:
        """Stop the producer (messages not flushed yet may be lost: call :meth:`flush` first)."""
        if self._loop.is_closed():
            return
        try:
            if self._producer is not None:
                self._loop.run_until_complete(self._producer.stop())
        finally:
            self._loop.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def produce_events(
    lines_or_events: Iterable[EventLike],
    bootstrap: str,
    topics: Mapping[Family, str] = DEFAULT_TOPICS,
    progress: bool = True,
    deadletter_topic: str = DEFAULT_DEADLETTER_TOPIC,
    origin_file: str | None = None,
    total: int | None = None,
    output_topic: str | None = None,
    **producer_config: Any,
) -> ProduceResult:
    """Send every event to its family's topic, keyed by ``appointment_id``; return counts per topic.

    Items may be ``(line_number, raw_bytes)`` pairs (as from
    :func:`schemas.eventfile.read_event_lines`), raw bytes or str, dicts (serialised with
    orjson) or pydantic events. Unroutable items go to ``deadletter_topic`` with headers
    (``origin_line`` is the line number, or the item's 1-based position), and with
    ``output_topic`` their dead-letter rows to the writer. ``total`` sizes the progress bar. Raises :class:`ProduceError` if the broker did not take every message.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, unit="ev", unit_scale=True, disable=not progress, desc="produce", mininterval=0.5)
    pending = 0
    with EventProducer(bootstrap, topics, deadletter_topic, output_topic=output_topic, **producer_config) as producer:
        for position, item in enumerate(lines_or_events, start=1):
            if isinstance(item, tuple):
                line, raw = item[0], _as_bytes(item[1])
            else:
                line, raw = position, _as_bytes(item)
            producer.send_event(raw, origin_file, line)
            pending += 1
            if pending == _PROGRESS_STEP:
                bar.update(pending)
                pending = 0
        bar.update(pending)
        bar.close()
        result = producer.flush()
    log.info("produced", counts=result.counts, unroutable=result.unroutable, total=result.total)
    return result
