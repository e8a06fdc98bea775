"""The Faust application: transport and state store around the pure journey logic.

Two agents, each a named callback of :class:`JourneyWorker`:

- ``journeys`` reads the four family topics (co-partitioned, keyed by
  ``appointment_id``) in batches (``stream.take_events``) and hands each batch to the
  core's :class:`journey.batch.JourneyStep` with the ``journey_state`` table as store
  (one read and one changelog write per touched appointment per batch). Invalid
  messages go to the dead-letter topic with their origin; rows to the output topic;
  each appointment's latest version to the patient-updates topic, partitioned by
  pseudonymous patient key.
- ``patients`` folds those updates into the ``patient_state`` table
  (:class:`journey.batch.PatientStep`) and publishes the per-patient rows.

End-of-input markers (:mod:`streams.markers`) flow through both agents: each input
partition's marker is acknowledged on every output partition after everything before it.
Faust's private API is touched only in :mod:`streams.transport`.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from journey.batch import JourneyStep, PatientStep, Record, StepOutput
from journey.ingest import DeadLetter
from journey.processor import JourneyStores, PatientProcessor
from runtime.config import Settings
from runtime.logs import get_logger
from streams.assemble import edge_from, journey_processor_from, too_late_ms
from streams.markers import acknowledgement, decode_marker, is_marker
from streams.transport import SCHEME, Producer, broker_reachable, drain_changelog_buffer, each_batch, write_tables_as

MAX_OUTPUT_BYTES = 512 * 1024
# Dead letters are re-sent whole up to this size (well below the producer's request limit,
# 4 x MAX_OUTPUT_BYTES); larger ones as their first bytes with size and digest headers.
DEADLETTER_MAX_BYTES = 1024 * 1024
DEADLETTER_TRUNCATED_BYTES = 64 * 1024

log = get_logger("streams.worker")


@functools.lru_cache(maxsize=1 << 16)
def key_partition(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2) for ``key``: the partition any Kafka client
    sends a message with this key to (appointment ids on the inputs, patient keys on the
    patient-updates topic).

    Cached: murmur2 is pure Python in aiokafka, and a key comes back with every event
    of its appointment and every version of its patient's journeys.
    """
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


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
        self.dead_lettered: dict[str, int] = defaultdict(int)  # by reason code

    def prometheus(self, step: JourneyStep) -> str:
        processor = step.journeys
        lines = []
        values = {**self.counters, "duplicates": processor.duplicates, "late_events": processor.late_events,
                  "too_late": step.too_late, "archived": processor.archived, "archive_returns": processor.returns,
                  "timer_errors": processor.timer_errors}
        for name, value in sorted(values.items()):
            lines.append(f"# TYPE journeys_{name}_total counter\njourneys_{name}_total {value}")
        lines.append("# TYPE journeys_dead_letters_total counter")
        lines.extend(f'journeys_dead_letters_total{{reason="{reason}"}} {count}'
                     for reason, count in sorted(self.dead_lettered.items()))
        lines.append(f"# TYPE journeys_watermark_seconds gauge\njourneys_watermark_seconds {max(processor.watermark.value, 0) / 1000}")
        return "\n".join(lines) + "\n"


class JourneyWorker:
    """The stream worker's state and callbacks; :func:`create_app` wires them to Faust.

    ``app`` gives the topics and tables (``inputs``, ``output``, ``deadletter``,
    ``patient_updates``, ``journey_table``, ``journey_archive``, ``patient_table``) once
    :meth:`bind` has run.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.partitions = settings.partitions
        self.journeys = journey_processor_from(settings)
        # Patient keys and appointment ids are partitioned alike: Kafka's partitioner of the key.
        partition_of = functools.partial(key_partition, partitions=settings.partitions)
        self.step = JourneyStep(edge_from(settings), self.journeys, partition_of, too_late_ms(settings),
                                home_partition=partition_of, wrong_key=settings.wrong_key)
        self.patients = PatientStep(PatientProcessor())
        self.stats = Stats()
        # Timers live in memory: after a rebalance each stage rebuilds them from its table.
        self.rebuild_timers = {"journeys": True, "patients": True}

    def bind(self, app: Any, inputs: dict[str, Any], output: Any, deadletter: Any, patient_updates: Any,
             journey_table: Any, journey_archive: Any, patient_table: Any) -> None:
        self.app, self.output, self.deadletter, self.patient_updates = app, output, deadletter, patient_updates
        self.inputs = inputs  # topic name -> topic, to send an event on to its appointment's partition
        self.journey_table, self.patient_table = journey_table, patient_table
        self.journey_stores = JourneyStores(hot=journey_table, archive=journey_archive)

    # -- callbacks ----------------------------------------------------------------------

    def on_rebalance(self) -> None:
        self.rebuild_timers["journeys"] = self.rebuild_timers["patients"] = True

    async def on_journey_batch(self, events: Sequence[Any]) -> None:
        """Input events in offset order; a marker splits the batch where it stands."""
        if self.rebuild_timers["journeys"]:
            self.rebuild_timers["journeys"] = False
            count = self.journeys.reschedule(self.journey_table, self._assigned(self.settings.input_topics))
            log.info("timers_rebuilt", stage="journey", journeys=count)
        segment: list[Any] = []
        for event in events:
            if is_marker(event.message.headers):
                await self._journey_segment(segment)
                segment = []
                await self._journey_marker(event)
            else:
                segment.append(event)
        if segment:
            await self._journey_segment(segment)
        await drain_changelog_buffer(self.app)
        self.stats.counters["batches"] += 1

    async def on_patient_batch(self, events: Sequence[Any]) -> None:
        if self.rebuild_timers["patients"]:
            self.rebuild_timers["patients"] = False
            count = self.patients.patients.reschedule(self.patient_table,
                                                      self._assigned([self.settings.topic_patient_updates]))
            log.info("timers_rebuilt", stage="patient", patients=count)
        updates: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        last_event: dict[int, Any] = {}
        markers: list[tuple[int, dict[str, Any]]] = []
        for event in events:
            body = orjson.loads(event.message.value)
            partition = event.message.partition
            last_event[partition] = event
            for update in body["updates"]:
                updates[partition][update["patient_key"]].append(update)
            if "marker" in body:
                markers.append((partition, body["marker"]))
        for _, marker in markers:
            if marker.get("final"):
                self.patients.patients.watermark.finish(marker["watermark_ms"])

        def store_for(partition: int) -> Any:
            write_tables_as(last_event[partition])
            return self.patient_table

        out = self.patients.run(updates, store_for, partitions=last_event)
        self.stats.counters["patient_versions"] += out.versions
        buffer = OutputBuffer()
        for bundle in out.bundles:
            buffer.add(bundle)
        await self._publish(buffer)
        for partition, marker in markers:
            await self._acknowledge("patient", marker, marker["origin"], partition)
        await drain_changelog_buffer(self.app)

    # -- journey stage ---------------------------------------------------------------------

    async def _journey_segment(self, events: list[Any]) -> None:
        last_event: dict[int, Any] = {}
        records = []
        for event in events:
            message = event.message
            last_event[message.partition] = event
            records.append(Record(message.value, message.topic, message.partition, message.offset, message.key))

        def stores_for(partition: int) -> JourneyStores:
            write_tables_as(last_event[partition])
            return self.journey_stores

        out = self.step.run(records, stores_for, received_ms=int(time.time() * 1000), now_s=time.monotonic())
        for record, dead in out.dead:
            await self._dead_letter(record, dead)
        # Delivered before this batch goes on: an end-of-input marker read after them on this
        # partition is acknowledged only once they sit on their home partitions (a second
        # marker round, as `journeys sync` sends, then covers them there).
        sent = [await self.inputs[record.topic or ""].send(
                    key=appointment_id.encode(), value=record.value, partition=home,
                    headers=[("rerouted_from", f"{record.topic}:{record.partition}:{record.offset}".encode())])
                for record, appointment_id, home in out.rerouted]
        for delivery in sent:
            await delivery
        self.stats.counters["rerouted"] += len(out.rerouted)
        self.stats.counters["events_valid"] += out.valid
        self.stats.counters["events_dead_lettered"] += len(out.dead)
        for _, dead in out.dead:
            self.stats.dead_lettered[dead.reason] += 1
        await self._send(out)

    async def _journey_marker(self, event: Any) -> None:
        marker = decode_marker(event.message.value)
        if marker.get("final"):
            # Without an end time from the sender, the end is the latest event this worker saw.
            end = marker.get("end_ms")
            self.journeys.watermark.finish(self.journeys.watermark.max_seen_ms if end is None else end)
        write_tables_as(event)
        topic, partition = event.message.topic, event.message.partition
        out = self.step.fire(partition, self.journey_stores)
        await self._send(out, marker={**marker, "origin": f"{topic}:{partition}",
                                      "watermark_ms": self.journeys.watermark.value})
        await self._acknowledge("journey", marker, topic, partition)
        log.info("marker_passed", stage="journey", marker_id=marker["marker_id"], topic=topic, partition=partition)

    async def _send(self, out: StepOutput, marker: dict[str, Any] | None = None) -> None:
        """Rows to the output topic; patient updates to their patient partitions (a marker
        to every patient partition, after the updates before it)."""
        buffer = OutputBuffer()
        for bundle in out.bundles:
            buffer.add(bundle)
        await self._publish(buffer)
        self.stats.counters["journey_versions"] += out.versions
        targets = range(self.partitions) if marker is not None else out.patient_updates
        for target in targets:
            items = [update for updates in out.patient_updates.get(target, {}).values() for update in updates]
            body: dict[str, Any] = {"updates": items}
            if marker is not None:
                body["marker"] = marker
            await self.patient_updates.send(value=orjson.dumps(body), partition=target)

    # -- output ----------------------------------------------------------------------------

    async def _dead_letter(self, record: Record, dead: DeadLetter) -> None:
        """The original bytes with their origin and reason to the dead-letter topic; a message
        too large to send again goes as its first bytes, with its size and digest."""
        value = record.value
        headers = [("reason", dead.reason.encode()), ("detail", dead.detail.encode()[:4096]),
                   ("origin_topic", (record.topic or "").encode()),
                   ("origin_partition", str(record.partition).encode()), ("origin_offset", str(record.offset).encode())]
        if len(value) > DEADLETTER_MAX_BYTES:
            headers += [("original_size", str(len(value)).encode()),
                        ("original_sha256", hashlib.sha256(value).hexdigest().encode()), ("truncated", b"1")]
            value = value[:DEADLETTER_TRUNCATED_BYTES]
        await self.deadletter.send(key=record.key, value=value, headers=headers)

    async def _publish(self, buffer: OutputBuffer) -> None:
        for message in buffer.messages():
            await self.output.send(value=message)
            self.stats.counters["output_messages"] += 1

    async def _acknowledge(self, stage: str, marker: dict[str, Any], origin: str, partition: int) -> None:
        message = acknowledgement(stage, marker, origin, partition)
        for target in range(self.partitions):
            await self.output.send(value=message, partition=target)

    def _assigned(self, topic_names: Sequence[str]) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic in topic_names}


def create_app(settings: Settings) -> Any:
    """The Faust app with its topics, tables, agents and web pages around a :class:`JourneyWorker`."""
    import faust
    from mode import CrashingSupervisor

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    Producer.idempotent = settings.idempotent_producer
    app = faust.App(
        settings.app_id,
        broker=[f"{SCHEME}://{address.strip()}" for address in settings.bootstrap.split(",")],
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
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    worker = JourneyWorker(settings)
    # Faust picks changelog codecs from key_type/value_type: str keys as JSON (they come
    # back as str after recovery), bytes values raw (the states' own encoding).
    worker.bind(
        app,
        inputs={name: app.topic(name, **raw) for name in settings.input_topics},
        output=app.topic(settings.topic_output, **raw),
        deadletter=app.topic(settings.topic_deadletter, **raw),
        patient_updates=app.topic(settings.topic_patient_updates, **raw),
        journey_table=app.Table("journey_state", partitions=settings.partitions, key_type=str, value_type=bytes),
        journey_archive=app.Table("journey_archive", partitions=settings.partitions, key_type=str, value_type=bytes),
        patient_table=app.Table("patient_state", partitions=settings.partitions, key_type=str, value_type=bytes),
    )

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # Faust passes the signal as a keyword
    async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
        worker.on_rebalance()

    # A crashed agent must stop the worker (and so be restarted), not leave it idle; a batch
    # that fails ends the process before Faust acknowledges it (streams.transport.each_batch).
    @app.agent(app.topic(*settings.input_topics, **raw), name="journeys", supervisor_strategy=CrashingSupervisor)
    async def journey_agent(stream: Any) -> None:
        await each_batch(stream, settings.batch_size, settings.batch_seconds, worker.on_journey_batch)

    @app.agent(worker.patient_updates, name="patients", supervisor_strategy=CrashingSupervisor)
    async def patient_agent(stream: Any) -> None:
        await each_batch(stream, settings.batch_size, settings.batch_seconds, worker.on_patient_batch)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        recovered = not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        reachable = await broker_reachable(app)
        ready = recovered and reachable
        return web.json({"ready": ready, "recovered": recovered, "broker_reachable": reachable},
                        status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.text(worker.stats.prometheus(worker.step), content_type="text/plain")

    return app
