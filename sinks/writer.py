"""The Kafka -> ClickHouse writer: consume the output topic, insert rows, then commit.

The output topic contract: each message value is a JSON object mapping a table name
to a list of row objects, e.g. ``{"appointment_journeys": [{...}], "friction_events":
[...]}``. Row keys are the table's column names; DateTime64 values are epoch
milliseconds (UTC) or null, Maps are objects, Arrays lists. ``pipeline_markers`` rows
get ``output_partition`` from the message's partition, and ``written_at`` /
``ingested_at`` / ``received_at`` are filled when missing.

Guarantees:

- at least once, idempotent: offsets are committed only after the batch is in
  ClickHouse; a redelivered batch replaces itself (ReplacingMergeTree keys and
  versions), so a crash or rebalance never loses or double-counts a row;
- markers last: a partition's marker rows are inserted only after every row before
  them on that partition (and the ``site_hourly`` buckets they touch);
- backpressure: while ClickHouse fails, the writer stops fetching (partitions
  paused; it holds at most two batches: one being inserted, one fetched) and retries with exponential
  backoff capped at ``sink_max_retry_s``; it keeps polling so it stays in the
  consumer group;
- no stall on bad data: only a *transient* failure (ClickHouse down or overloaded,
  :func:`sinks.faults.classify`) is retried. Rows that cannot be written (refused by
  the conversion or by the engine, found by splitting the insert; messages that are
  not bundles) go to ``rejected_rows`` with the reason and their message's
  topic/partition/offset, the rest of the batch is written and the offsets committed
  (:mod:`sinks.rows`);
- ready (``/readyz``) only while ClickHouse answers (inserts, or ``SELECT 1`` every
  ``health_check_s`` when idle) and the consumer's fetches from the broker succeed
  (:meth:`SinkWriter.kafka_reachable`).

One writer per chdb directory (chdb is in-process); with a ClickHouse server run N
writers in one consumer group. Embedding (``journeys replay`` / ``demo``)::

    writer = SinkWriter(WriterConfig.from_settings(settings, port=None))
    task = asyncio.create_task(writer.run())
    ...
    ...  # streams.markers.wait_for_marker(lambda: marker_rows(client, database, marker_id), ...)
    await writer.stop()
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from clickhouse_connect.driver.client import Client

from runtime.config import Settings
from runtime.logs import get_logger
from sinks.client import ChdbBusyError, DsnError, connect, redact_dsn
from sinks.faults import Fault, classify
from sinks.http import WriterHttp
from sinks.metrics import WriterMetrics
from sinks.migrate import migrate
from sinks.readonly import READ_ONLY_SETTINGS
from sinks.rows import Origin, RowWriter, WriteFaults, with_output_partition

log = get_logger("sinks.writer")
T = TypeVar("T")
INSERT_STALL_S = 600.0  # an insert running longer than this makes /healthz fail (restart)


@dataclass(frozen=True)
class WriterConfig:
    """Everything the writer needs; :meth:`from_settings` maps the ``JOURNEYS_*`` settings."""

    bootstrap: str
    topic: str
    group_id: str
    dsn: str
    database: str = "journeys"
    database_engine: str = ""  # see sinks.migrate.migrate
    batch_rows: int = 20_000
    batch_seconds: float = 1.0
    max_retry_s: float = 30.0
    session_timeout_s: float = 10.0
    port: int | None = 6067  # None: no HTTP server; 0: any free port (see SinkWriter.http_port)
    host: str = "0.0.0.0"
    run_migrations: bool = True
    progress_every_s: float = 10.0
    stop_flush_timeout_s: float = 10.0  # retrying a failing flush on stop, within a pod's grace period
    health_check_s: float = 5.0  # idle: how often ClickHouse is asked SELECT 1 (so /readyz sees it go away)
    client_id: str = field(default_factory=lambda: f"journeys-writer-{uuid.uuid4().hex[:8]}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WriterConfig:
        config = cls(
            bootstrap=settings.bootstrap,
            topic=settings.topic_output,
            group_id=f"{settings.consumer_group}-clickhouse-writer",
            dsn=settings.dsn,
            database=settings.clickhouse_database,
            database_engine=settings.clickhouse_database_engine,
            batch_rows=settings.sink_batch_rows,
            batch_seconds=settings.sink_batch_seconds,
            max_retry_s=settings.sink_max_retry_s,
            session_timeout_s=settings.session_timeout_s,
            port=settings.writer_port,
        )
        return replace(config, **overrides)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, writer: SinkWriter) -> None:
        self._writer = writer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._writer.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._writer.on_assigned(set(assigned))


class SinkWriter:
    """Consume ``config.topic`` and write it to ClickHouse until :meth:`stop`."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self.metrics = WriterMetrics()
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time (main loop vs rebalance callback)
        # All ClickHouse calls on one thread: keeps the event loop (and the consumer's
        # heartbeats) free during inserts, and chdb sees one caller.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Client | None = None
        # Reads (/query) get their own client and thread so they never hold up inserts.
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")
        self._reader: Client | None = None
        self._rows: RowWriter | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._http: WriterHttp | None = None
        # The batch: bundles (or the bytes of a message that is not one: it is rejected
        # whole) and the message each came in.
        self._bundles: list[dict[str, Any] | bytes] = []
        self._origins: list[Origin] = []
        self._offsets: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        # Fetched and decoded, not yet in a batch: (partition, offset, bundle or bytes, rows).
        self._pending: deque[tuple[TopicPartition, int, dict[str, Any] | bytes, int]] = deque()
        self._pending_rows = 0
        self._inflight: asyncio.Task[bool] | None = None  # the batch being inserted, if any
        self._max_records = max(1, min(2000, config.batch_rows))
        self._buffer_since = 0.0
        self._failures = 0
        self._retry_at = 0.0
        self._paused = False
        self._alive_at = time.monotonic()
        self._insert_started = 0.0
        self._running = False
        self._clickhouse_ok = False
        self._clickhouse_seen_at = 0.0  # monotonic time of the last ClickHouse call that worked
        self._kafka_ok = True
        self._progress_at = time.monotonic()
        self._progress_rows = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port once running (useful with ``port=0``)."""
        return self._http.port if self._http else None

    @property
    def alive(self) -> bool:
        """For /healthz: the loop turns, or an insert is in flight for less than ``INSERT_STALL_S``."""
        if self._done.is_set():
            return False
        now = time.monotonic()
        if self._insert_started:
            return now - self._insert_started < INSERT_STALL_S
        return now - self._alive_at < max(60.0, 6 * self.config.session_timeout_s)

    async def run(self) -> None:
        """Run until :meth:`stop` (or :meth:`request_stop`); flushes and commits on the way out."""
        config = self.config
        log.info(
            "writer_starting",
            topic=config.topic,
            group=config.group_id,
            dsn=redact_dsn(config.dsn),
            database=config.database,
            batch_rows=config.batch_rows,
            batch_seconds=config.batch_seconds,
        )
        self._running = True
        try:
            if config.port is not None:
                self._http = WriterHttp(self, config.host, config.port)
                await self._http.start()
            await self._probe_clickhouse()  # a failure here is retried by the loop
            self._consumer = await self._start_consumer()
            if self._consumer is None:
                return  # stopped before Kafka was reachable
            self._update_ready()
            while not self._stop.is_set():
                await self._step()
            await self._flush_on_stop()
        finally:
            await self._shutdown()

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        self._stop.set()

    async def stop(self) -> None:
        """Ask :meth:`run` to finish and wait until it has (returns at once if it never ran)."""
        self.request_stop()
        if self._running:
            await self._done.wait()

    async def _shutdown(self) -> None:
        if self._consumer is not None:
            try:
                # Bounded: with the broker gone aiokafka can wait on the group coordinator
                # for ever; nothing is lost by not waiting (uncommitted records are
                # delivered again).
                await asyncio.wait_for(self._consumer.stop(), timeout=self.config.stop_flush_timeout_s)
            except asyncio.CancelledError as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled ourselves
                # With the broker gone, aiokafka's stop() lets its own fetch task's
                # cancellation escape: without this the writer never finished stopping.
                log.warning("consumer_stop_failed", error=_short(error))
            except Exception as error:
                log.warning("consumer_stop_failed", error=_short(error))
        if self._http is not None:
            await self._http.stop()
        await self._in_clickhouse_thread(self._close_client)
        await asyncio.get_running_loop().run_in_executor(self._read_executor, self._close_reader)
        self._executor.shutdown(wait=True)
        self._read_executor.shutdown(wait=True)
        self.metrics.ready = False
        self._done.set()
        log.info("writer_stopped", rows_written=dict(self.metrics.rows_written), batches=self.metrics.batches)

    async def _start_consumer(self) -> AIOKafkaConsumer | None:
        config = self.config
        delay = 0.5
        while not self._stop.is_set():
            self._alive_at = time.monotonic()  # retrying is alive
            consumer = AIOKafkaConsumer(
                bootstrap_servers=config.bootstrap,
                group_id=config.group_id,
                client_id=config.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=int(config.session_timeout_s * 1000),
                heartbeat_interval_ms=max(100, int(config.session_timeout_s * 1000 / 3)),
                max_poll_records=2000,
                # One message can carry thousands of rows (an `events` bundle): let a
                # partition fetch hold a big one rather than stall on it.
                max_partition_fetch_bytes=16 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            try:
                await consumer.start()
            except KafkaError as error:
                self.metrics.errors["consumer"] += 1
                log.warning("kafka_unreachable", bootstrap=config.bootstrap, error=str(error), retry_in_s=delay)
                await consumer.stop()
                await self._sleep(delay)
                delay = min(delay * 2, config.max_retry_s)
                continue
            consumer.subscribe([config.topic], listener=_Rebalance(self))
            return consumer
        return None

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    # -- main loop ---------------------------------------------------------------------

    async def _step(self) -> None:
        """One turn: finish/start a flush, then fetch. Fetching goes on while a batch is
        being inserted (on the ClickHouse thread), so Kafka and ClickHouse work overlap."""
        assert self._consumer is not None
        self._alive_at = time.monotonic()
        if self._inflight is not None and self._inflight.done():
            self._inflight = None
        if self._inflight is None:
            if not self._offsets and self._probe_due():
                await self._probe_clickhouse()
            self._fill_from_pending()
            if self._offsets and self._flush_due() and time.monotonic() >= self._retry_at:
                self._inflight = asyncio.create_task(self._flush())
        self._apply_backpressure()
        try:
            batches = await self._consumer.getmany(timeout_ms=self._poll_timeout_ms(), max_records=self._max_records)
        except KafkaError as error:
            self.metrics.errors["consumer"] += 1
            log.warning("consume_failed", error=str(error))
            await self._sleep(0.5)
            return
        for partition, records in batches.items():
            for record in records:
                decoded = self._decode(partition, record.offset, record.value)
                self._pending.append(decoded)
                self._pending_rows += decoded[3]
        self._kafka_ok = self.kafka_reachable()
        self._update_ready()
        self._log_progress()

    def _probe_due(self) -> bool:
        """Idle (nothing batched): ask ClickHouse again when it failed (so /readyz recovers)
        or has not been heard from for ``health_check_s`` (so /readyz sees it go away)."""
        now = time.monotonic()
        if now < self._retry_at:
            return False
        return not self._clickhouse_ok or now - self._clickhouse_seen_at >= self.config.health_check_s

    def kafka_reachable(self) -> bool:
        """Whether the consumer's fetches from the broker succeed.

        aiokafka long-polls every partition it fetches (``fetch_max_wait_ms``, 0.5 s)
        and stamps each good fetch response, empty or not (``last_poll_timestamp``);
        with the broker gone the stamps stop. So: unreachable once no fetching partition
        has had a response for ``3 * session_timeout_s``. Paused partitions are not
        fetched (backpressure) and say nothing; with no partition assigned there is
        nothing to judge either (more writers than partitions is normal), and losing
        the group through a broker outage shows as stale stamps before the assignment
        goes.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        fetching = consumer.assignment() - consumer.paused()
        stamps = [consumer.last_poll_timestamp(tp) for tp in fetching]
        known = [stamp for stamp in stamps if stamp is not None]
        if not fetching or len(known) < len(stamps):
            return True  # nothing fetched, or a partition not answered yet since it was assigned
        return time.time() * 1000 - max(known) < 3000 * self.config.session_timeout_s

    def _update_ready(self) -> None:
        self.metrics.clickhouse_ok, self.metrics.kafka_ok = self._clickhouse_ok, self._kafka_ok
        self.metrics.ready = self._consumer is not None and self._clickhouse_ok and self._kafka_ok

    def _fill_from_pending(self) -> None:
        # Batches stop at batch_rows (at a message boundary) even when one fetch
        # brought more: the rest waits here, already fetched, for the next batch.
        while self._pending and self.metrics.buffered_rows < self.config.batch_rows:
            partition, offset, bundle, rows = self._pending.popleft()
            self._pending_rows -= rows
            if not self._offsets:
                self._buffer_since = time.monotonic()
            self._offsets[partition] = offset + 1
            self._bundles.append(bundle)
            self._origins.append(Origin(partition.topic, partition.partition, offset))
            self.metrics.buffered_rows += rows

    def _flush_due(self) -> bool:
        return (
            self.metrics.buffered_rows >= self.config.batch_rows
            or time.monotonic() - self._buffer_since >= self.config.batch_seconds
        )

    def _poll_timeout_ms(self) -> int:
        # Wake up in time for the next flush or retry, and often enough to see stop();
        # don't wait at all while fetched records or a due batch are waiting for us.
        if self._inflight is not None:
            return 20  # check back soon: the next batch starts when this one is in
        now = time.monotonic()
        if self._pending and self._clickhouse_ok:
            return 0
        wake = now + 0.5
        if self._offsets:
            wake = min(wake, max(self._buffer_since + self.config.batch_seconds, self._retry_at))
        return max(0, int((wake - now) * 1000))

    def _apply_backpressure(self) -> None:
        # Stop fetching while ClickHouse fails or a whole next batch is already fetched
        # (memory: one batch being inserted + one waiting); getmany() still runs
        # (returning nothing) so the consumer keeps its group membership.
        assert self._consumer is not None
        should_pause = (
            not self._clickhouse_ok
            or self._pending_rows >= self.config.batch_rows
            or (
                len(self._pending) >= self.config.batch_rows  # messages without rows count too
            )
        )
        assigned = self._consumer.assignment()
        if should_pause and not self._paused and assigned:
            self._consumer.pause(*assigned)
            self._paused = True
            log.info("consumption_paused", buffered_rows=self.metrics.buffered_rows, clickhouse_ok=self._clickhouse_ok)
        elif not should_pause and self._paused:
            self._consumer.resume(*assigned)
            self._paused = False
            log.info("consumption_resumed")

    def _decode(
        self, partition: TopicPartition, offset: int, value: bytes | None
    ) -> tuple[TopicPartition, int, dict[str, Any] | bytes, int]:
        self.metrics.messages += 1
        try:
            bundle = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            bundle = None
        if not isinstance(bundle, dict):
            # Never the payload in logs: rows can carry PHI-adjacent data. The bytes go
            # to rejected_rows with the batch (RowWriter rejects a non-bundle whole) and
            # the offset is committed with it: a bad message is set aside once.
            self.metrics.errors["decode"] += 1
            log.error("message_not_a_bundle", topic=partition.topic, partition=partition.partition, offset=offset)
            return partition, offset, value or b"", 0
        rows = sum(len(rows) for rows in bundle.values() if isinstance(rows, list))
        return partition, offset, with_output_partition(bundle, partition.partition), rows

    # -- flush -------------------------------------------------------------------------

    async def _flush(self) -> bool:
        """Insert the current batch, then commit its offsets; on failure keep it and schedule a retry."""
        async with self._lock:
            if not self._bundles and not self._offsets:
                return True
            bundles, origins, offsets, rows = self._bundles, self._origins, self._offsets, self.metrics.buffered_rows
            self._bundles, self._origins, self._offsets, self.metrics.buffered_rows = [], [], {}, 0
            started = self._insert_started = time.monotonic()
            try:
                counts, faults = await self._in_clickhouse_thread(self._write, bundles, origins)
            except Exception as error:
                self._insert_started = 0.0
                # Put the batch back in front of anything batched since (nothing is while
                # a flush runs, but keep the order right regardless).
                self._bundles, self._origins = bundles + self._bundles, origins + self._origins
                self._offsets = {**offsets, **self._offsets}
                self.metrics.buffered_rows += rows
                self.metrics.errors["insert"] += 1
                fault = classify(error)
                self.metrics.failures[fault.value] += 1
                if fault is Fault.DATA:
                    # RowWriter sets bad rows aside itself; a data error reaching here means
                    # setting them aside failed too (rejected_rows refused, a bug of ours).
                    # Retrying is the only way left not to lose the batch: loudly.
                    log.error("batch_unwritable", error=_short(error), messages=len(bundles))
                self._clickhouse_failed(error, "insert_failed")
                await self._in_clickhouse_thread(self._close_client)  # reconnect on the next attempt
                return False
            self._insert_started = 0.0
            elapsed = time.monotonic() - started
            self.metrics.rows_written.update(counts)
            self.metrics.rows_rejected.update(faults.rejected)
            self.metrics.failures["data"] += sum(faults.refused_inserts.values())
            self.metrics.skipped_buckets += faults.skipped_buckets
            self.metrics.batches += 1
            self.metrics.batch_seconds_sum += elapsed
            self._progress_rows += sum(n for table, n in counts.items() if table != "site_hourly")
            self._clickhouse_answered()
            await self._commit(offsets)
            log.debug("batch_written", rows=rows, tables=counts, seconds=round(elapsed, 3))
            return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except KafkaError as error:
            # The rows are in ClickHouse; the worst case is a redelivery, which is idempotent.
            self.metrics.errors["commit"] += 1
            log.warning("commit_failed", error=str(error), partitions=len(offsets))
            return
        self.metrics.last_commit_time = time.time()

    async def _flush_on_stop(self) -> None:
        if self._inflight is not None:
            await self._inflight
            self._inflight = None
        self._fill_from_pending()  # already fetched: write it rather than fetch it again later
        deadline = time.monotonic() + self.config.stop_flush_timeout_s
        while self._bundles or self._offsets:
            if await self._flush():
                self._fill_from_pending()
                continue
            if time.monotonic() >= deadline:
                log.warning(
                    "stop_without_flush",
                    buffered_rows=self.metrics.buffered_rows,
                    note="not committed: these messages will be delivered again",
                )
                return
            await asyncio.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Hand partitions over clean: write and commit what we hold. If ClickHouse is
        # down, drop the batch uncommitted: the next owner gets those records again.
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        if (self._bundles or self._offsets) and not await self._flush():
            log.warning("rebalance_buffer_dropped", buffered_rows=self.metrics.buffered_rows)
            self._bundles, self._origins, self._offsets = [], [], {}
            self.metrics.buffered_rows = 0
        # Fetched-but-unbatched records are not ours to keep: uncommitted, they are
        # fetched again by whoever owns their partition next (us included).
        self._pending.clear()
        self._pending_rows = 0
        self._paused = False  # a new assignment starts unpaused
        log.info("partitions_revoked", partitions=len(revoked))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.metrics.assigned_partitions = len(assigned)
        self._paused = False
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    # -- ClickHouse (runs on the ClickHouse thread) --------------------------------------

    async def _in_clickhouse_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _probe_clickhouse(self) -> None:
        """Connect (and migrate) now; a failure schedules the next attempt like a failed insert.

        A chdb directory held by another process or a malformed DSN cannot heal by
        waiting: those stop the writer with the error.
        """
        try:
            await self._in_clickhouse_thread(self._ping)
        except (ChdbBusyError, DsnError):
            raise
        except Exception as error:
            self._clickhouse_failed(error, "clickhouse_unreachable")
            await self._in_clickhouse_thread(self._close_client)
            return
        self._clickhouse_answered()

    def _clickhouse_answered(self) -> None:
        if self._failures:
            log.info("clickhouse_recovered", after_attempts=self._failures)
        self._clickhouse_ok, self._failures, self._retry_at = True, 0, 0.0
        self._clickhouse_seen_at = time.monotonic()
        self._update_ready()

    def _clickhouse_failed(self, error: BaseException, event: str) -> float:
        self._failures += 1
        self._clickhouse_ok = False
        self._update_ready()
        delay = min(self.config.max_retry_s, 0.5 * 2 ** (self._failures - 1)) * random.uniform(0.8, 1.0)
        self._retry_at = time.monotonic() + delay
        log.warning(
            event,
            dsn=redact_dsn(self.config.dsn),
            error=_short(error),
            attempt=self._failures,
            retry_in_s=round(delay, 2),
            buffered_rows=self.metrics.buffered_rows,
        )
        return delay

    def _open_client(self) -> RowWriter:
        if self._rows is None:
            client = connect(self.config.dsn)
            try:
                if self.config.run_migrations:
                    migrate(client, self.config.database, database_engine=self.config.database_engine)
            except Exception:
                client.close()
                raise
            self._client, self._rows = client, RowWriter(client, self.config.database)
        return self._rows

    def _ping(self) -> None:
        self._open_client().client.command("SELECT 1")

    def _write(self, bundles: list[dict[str, Any] | bytes], origins: list[Origin]) -> tuple[dict[str, int], WriteFaults]:
        rows = self._open_client()
        counts = rows.write(bundles, origins)
        return counts, rows.last_faults

    async def read_query(self, statement: str, fmt: str) -> bytes:
        """Run a read-only statement (already checked) with ``readonly = 1``; the raw output."""
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, self._read, statement, fmt)

    def _read(self, statement: str, fmt: str) -> bytes:
        if self._reader is None:
            self._reader = connect(self.config.dsn, self.config.database)
        try:
            return bytes(self._reader.raw_query(statement, settings=READ_ONLY_SETTINGS, fmt=fmt))
        except Exception:
            self._close_reader()
            raise

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:
                pass
        self._reader = None

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client, self._rows = None, None

    # -- logs --------------------------------------------------------------------------

    def _log_progress(self) -> None:
        now = time.monotonic()
        elapsed = now - self._progress_at
        if elapsed < self.config.progress_every_s:
            return
        log.info(
            "writer_progress",
            rows_per_s=round(self._progress_rows / elapsed, 1),
            rows_written=sum(n for t, n in self.metrics.rows_written.items() if t != "site_hourly"),
            batches=self.metrics.batches,
            buffered_rows=self.metrics.buffered_rows,
            partitions=self.metrics.assigned_partitions,
            clickhouse_ok=self._clickhouse_ok,
        )
        self._progress_at, self._progress_rows = now, 0


def _short(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit] + "..."
