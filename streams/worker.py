"""The Faust application: transport and state store around the pure journey logic.

Two agents:

- ``journeys`` reads the four family topics (co-partitioned, keyed by
  ``appointment_id``) in batches (``stream.take_events``), validates at the edge
  (invalid messages go to the dead-letter topic with their origin), applies each
  appointment's new facts to its state in the ``journey_state`` table (one read and one
  changelog write per touched appointment per batch) and publishes the new versions'
  rows to the output topic, and each appointment's latest version to the
  patient-updates topic, partitioned by pseudonymous patient key.
- ``patients`` folds those updates into the ``patient_state`` table and publishes the
  per-patient rows.

End-of-input markers (a message with the ``journeys-marker`` header on every
partition of every input topic) flow through both agents: each partition's marker is
acknowledged on every output partition after everything before it, so a client knows
when all its events are in ClickHouse without trusting end offsets.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from streams.config import Settings
from streams.journey.facts import Fact
from streams.journey.ingest import Accepted, Edge
from streams.journey.offline import edge_from, journey_processor_from
from streams.journey.processor import JourneyProcessor, PatientProcessor
from streams.logs import get_logger

MARKER_HEADER = "journeys-marker"
MAX_OUTPUT_BYTES = 512 * 1024

log = get_logger("streams.worker")


def is_marker(headers: Any) -> bool:
    if not headers:
        return False
    items = headers.items() if hasattr(headers, "items") else headers
    return any(key == MARKER_HEADER for key, _ in items)


def marker_value(marker_id: str, final: bool, end_ms: int | None) -> bytes:
    return orjson.dumps({"marker_id": marker_id, "final": final, "end_ms": end_ms})


def write_tables_as(event: Any) -> None:
    """Make Faust's tables write to the changelog partition (and store) of ``event``.

    A batch holds events of several partitions; Faust's tables find the partition of a
    write through the *current event*. Only this task's context variable is set:
    ``Stream._set_current_event`` would also overwrite the stream's attribute that
    ``take_events`` reads to pair the next buffered value with its event, silently
    swapping a new message for an old one.
    """
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


async def drain_changelog_buffer(app: Any) -> None:
    """Wait until every table write of the batch is handed to the Kafka producer.

    Faust queues changelog writes in a buffer that a background task drains, and its
    pre-commit ``flush`` gives up after 0.1 s without progress, so offsets could be
    committed for events whose new state never reached the changelog (measured: a fact
    lost after kill -9). Draining here, before the batch's events are acknowledged,
    keeps at-least-once true: the commit's own producer flush then waits for the
    broker's acknowledgements.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await asyncio.sleep(0.002)


@functools.lru_cache(maxsize=1 << 16)
def patient_partition(patient_key: str, partitions: int) -> int:
    """Kafka's murmur2 partitioner, so the patient topic is keyed like any Kafka client would.

    Cached: murmur2 is pure Python in aiokafka, and a patient comes back with every
    version of every one of their appointments.
    """
    from aiokafka.partitioner import murmur2

    return (murmur2(patient_key.encode()) & 0x7FFFFFFF) % partitions


class OutputBuffer:
    """Rows per table, each serialised once, cut into output messages of bounded size.

    A message is the JSON object ``{"table": [row, ...], ...}`` the writer reads; it is
    assembled from the rows' own bytes so that no row is encoded twice.

    >>> buffer = OutputBuffer()
    >>> buffer.add({"events": [{"a": 1}, {"a": 2}], "deadletters": []})
    >>> list(buffer.messages())
    [b'{"events":[{"a":1},{"a":2}]}']
    """

    def __init__(self) -> None:
        self.tables: dict[str, list[bytes]] = defaultdict(list)

    def add(self, bundle: dict[str, list[dict[str, Any]]]) -> None:
        for table, rows in bundle.items():
            if rows:
                self.tables[table].extend(map(orjson.dumps, rows))

    def messages(self) -> Iterable[bytes]:
        chunk: dict[str, list[bytes]] = defaultdict(list)
        size = 0
        for table, rows in self.tables.items():
            for row in rows:
                if size and size + len(row) > MAX_OUTPUT_BYTES:
                    yield _message(chunk)
                    chunk, size = defaultdict(list), 0
                chunk[table].append(row)
                size += len(row) + 1
        if chunk:
            yield _message(chunk)


def _message(chunk: dict[str, list[bytes]]) -> bytes:
    return b"{" + b",".join(b'"%s":[%s]' % (table.encode(), b",".join(rows)) for table, rows in chunk.items()) + b"}"


class Stats:
    """Counters for /metrics and logs."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = defaultdict(int)

    def prometheus(self, processor: JourneyProcessor) -> str:
        lines = []
        values = {**self.counters, "duplicates": processor.duplicates, "late_events": processor.late_events}
        for name, value in sorted(values.items()):
            lines.append(f"# TYPE journeys_{name}_total counter\njourneys_{name}_total {value}")
        lines.append(f"# TYPE journeys_watermark_seconds gauge\njourneys_watermark_seconds {max(processor.watermark.value, 0) / 1000}")
        return "\n".join(lines) + "\n"


def create_app(settings: Settings) -> Any:
    """Build the Faust app with its topics, tables, agents and web pages."""
    import faust
    from mode import CrashingSupervisor

    from streams import transport

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"{transport.SCHEME}://{address.strip()}" for address in settings.bootstrap.split(",")],
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_rebalance_timeout=max(60.0, settings.session_timeout_s * 2),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=4 * MAX_OUTPUT_BYTES,
        producer_max_batch_size=settings.producer_max_batch_size,
        table_standby_replicas=0,
        web_port=settings.web_port,
        web_bind="0.0.0.0",
        web_enabled=True,
        stream_wait_empty=False,
        broker_max_poll_records=settings.batch_size,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(*settings.input_topics, **raw)
    deadletter = app.topic(settings.topic_deadletter, **raw)
    output = app.topic(settings.topic_output, **raw)
    patient_updates = app.topic(settings.topic_patient_updates, **raw)
    # Faust picks changelog codecs from key_type/value_type: str keys as JSON (they come
    # back as str after recovery), bytes values raw (the states' own encoding).
    journey_table = app.Table("journey_state", partitions=settings.partitions, key_type=str, value_type=bytes)
    patient_table = app.Table("patient_state", partitions=settings.partitions, key_type=str, value_type=bytes)

    edge: Edge = edge_from(settings)
    journeys: JourneyProcessor = journey_processor_from(settings)
    patients = PatientProcessor()
    stats = Stats()
    partitions = settings.partitions
    rebuild = {"journeys": True, "patients": True}

    async def publish(buffer: OutputBuffer) -> None:
        for message in buffer.messages():
            await output.send(value=message)
            stats.counters["output_messages"] += 1

    async def acknowledge(stage: str, marker: dict[str, Any], origin: str, partition: int) -> None:
        row = {"marker_id": marker["marker_id"], "stage": stage, "input_topic": origin,
               "input_partition": partition, "watermark": marker.get("end_ms")}
        for target in range(partitions):
            await output.send(value=orjson.dumps({"pipeline_markers": [row]}), partition=target)

    def assigned(topic_names: Sequence[str]) -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in topic_names}

    @app.on_rebalance_complete.connect
    async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
        rebuild["journeys"] = rebuild["patients"] = True

    # -- journeys ----------------------------------------------------------------------

    async def journey_segment(events: list[Any]) -> None:
        by_partition: dict[int, dict[str, list[Fact]]] = defaultdict(lambda: defaultdict(list))
        last_event: dict[int, Any] = {}
        buffer = OutputBuffer()
        dead_rows = []
        now_ms = int(time.time() * 1000)
        for event in events:
            message = event.message
            outcome = edge.accept(message.value, message.topic, message.partition, message.offset, now_ms)
            last_event[message.partition] = event
            if isinstance(outcome, Accepted):
                by_partition[message.partition][outcome.appointment_id].append(outcome.fact)
                buffer.add({"events": [outcome.row]})
                stats.counters["events_valid"] += 1
            else:
                stats.counters["events_dead_lettered"] += 1
                dead_rows.append(outcome.row)
                await deadletter.send(key=message.key, value=message.value, headers=[
                    ("reason", outcome.reason.encode()), ("detail", outcome.detail.encode()),
                    ("origin_topic", message.topic.encode()), ("origin_partition", str(message.partition).encode()),
                    ("origin_offset", str(message.offset).encode()),
                ])
        buffer.add({"deadletters": dead_rows})
        journeys.observe(fact for batch in by_partition.values() for facts in batch.values() for fact in facts)
        updates: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for partition, event in last_event.items():
            write_tables_as(event)
            emissions = journeys.process(journey_table, partition, by_partition.get(partition, {}))
            route(emissions + journeys.fire(journey_table, partition), buffer, updates)
        await publish(buffer)
        for target, items in updates.items():
            await patient_updates.send(value=orjson.dumps({"updates": items}), partition=target)

    def route(emissions: list[Any], buffer: OutputBuffer, updates: dict[int, list[dict[str, Any]]]) -> None:
        """Rows to the output buffer; patient updates to their patient partition."""
        for emission in emissions:
            buffer.add(emission.bundle)
            update = emission.patient_update
            updates[patient_partition(update["patient_key"], partitions)].append(update)
        stats.counters["journey_versions"] += len(emissions)

    async def journey_marker(event: Any) -> None:
        marker = orjson.loads(event.message.value)
        if marker.get("final"):
            # Without an end time from the sender, the end is the latest event this worker saw.
            end = marker.get("end_ms")
            journeys.watermark.finish(journeys.watermark.max_seen_ms if end is None else end)
        write_tables_as(event)
        partition = event.message.partition
        buffer = OutputBuffer()
        updates: dict[int, list[dict[str, Any]]] = defaultdict(list)
        route(journeys.fire(journey_table, partition), buffer, updates)
        await publish(buffer)
        for target in range(partitions):
            body = {"updates": updates.get(target, []),
                    "marker": {**marker, "origin": f"{event.message.topic}:{partition}",
                               "watermark_ms": journeys.watermark.value}}
            await patient_updates.send(value=orjson.dumps(body), partition=target)
        await acknowledge("journey", marker, event.message.topic, partition)
        log.info("marker_passed", stage="journey", marker_id=marker["marker_id"], topic=event.message.topic,
                 partition=partition)

    # A crashed agent must stop the worker (and so be restarted), not leave it idle.
    @app.agent(inputs, name="journeys", supervisor_strategy=CrashingSupervisor)
    async def journey_agent(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            if rebuild["journeys"]:
                rebuild["journeys"] = False
                count = journeys.reschedule(journey_table, assigned(settings.input_topics))
                log.info("timers_rebuilt", stage="journey", journeys=count)
            segment: list[Any] = []
            for event in events:
                if is_marker(event.message.headers):
                    await journey_segment(segment)
                    segment = []
                    await journey_marker(event)
                else:
                    segment.append(event)
            if segment:
                await journey_segment(segment)
            await drain_changelog_buffer(app)
            stats.counters["batches"] += 1

    # -- patients ------------------------------------------------------------------------

    @app.agent(patient_updates, name="patients", supervisor_strategy=CrashingSupervisor)
    async def patient_agent(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            if rebuild["patients"]:
                rebuild["patients"] = False
                count = patients.reschedule(patient_table, assigned([settings.topic_patient_updates]))
                log.info("timers_rebuilt", stage="patient", patients=count)
            by_partition: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
            last_event: dict[int, Any] = {}
            markers: list[tuple[int, dict[str, Any]]] = []
            for event in events:
                body = orjson.loads(event.message.value)
                partition = event.message.partition
                last_event[partition] = event
                for update in body["updates"]:
                    by_partition[partition][update["patient_key"]].append(update)
                if "marker" in body:
                    markers.append((partition, body["marker"]))
            for _, marker in markers:
                if marker.get("final"):
                    patients.watermark.finish(marker["watermark_ms"])
            buffer = OutputBuffer()
            for partition, event in last_event.items():
                write_tables_as(event)
                emissions = patients.process(patient_table, partition, by_partition.get(partition, {}))
                emissions += patients.fire(patient_table, partition)
                for emission in emissions:
                    buffer.add(emission.bundle)
                stats.counters["patient_versions"] += len(emissions)
            await publish(buffer)
            await drain_changelog_buffer(app)
            for partition, marker in markers:
                await acknowledge("patient", marker, marker["origin"], partition)

    # -- web -------------------------------------------------------------------------------

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = not app.rebalancing and app.tables.recovery.completed.is_set()
        return web.json({"ready": ready}, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.text(stats.prometheus(journeys), content_type="text/plain")

    app.journeys_runtime = {"journeys": journeys, "patients": patients, "stats": stats}  # for tests and benchmarks
    return app
