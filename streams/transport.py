"""Every touch of Faust's and aiokafka's private API, in one module, behind a version guard.

Faust is the transport and state store around the pure journey logic; where its
public API does not do what the pipeline needs, this module reaches inside, and
nothing else in the project does. The guard below refuses any faust-streaming other
than the 0.15 series these overrides were written against (``pyproject.toml`` pins it).

Batches (:func:`each_batch`): ``Stream.take_events`` acknowledges every event of a batch
in a ``finally``, also when the agent raised or was cancelled mid-batch, and the next
commit then skips records nobody processed (measured: a poison message lost 178 valid
events). A batch that fails therefore ends the process at once, before that ``finally``
and any commit run: like a kill -9, which a restart survives (the journey logic is
idempotent and offsets are committed only for finished batches).

Table writes (:func:`write_tables_as`, :func:`drain_changelog_buffer`):

- a batch holds events of several partitions, and Faust's tables find the partition
  of a write through the *current event*: it is set per partition, in this task only;
- Faust's pre-commit flush gives up on the changelog buffer after 0.1 s, and neither it
  nor aiokafka's flush covers the record the buffer's task has taken out but not yet
  handed to aiokafka (``ProducerBuffer._handle_pending``), nor does aiokafka's flush
  report a failed send; so a batch waits for the broker's acknowledgement of every record
  it produced (changelog writes and output alike) before its events are acknowledged,
  and a failed one fails the batch.

The Kafka consumer, with three corrections:

1. **Partitions nobody committed are positioned too.** After every rebalance Faust
   recovers the tables, then "seeks stream partitions to committed offsets". aiokafka's
   ``seek_to_committed`` only seeks a partition whose committed offset is above 0 and
   leaves the others wherever the fetcher already is. The fetcher runs during table
   recovery, and what it took for stream partitions then is thrown away when the flow
   resumes. For a partition its consumer group never committed (a fresh group, or a
   worker killed before its first commit) those records were skipped for good:
   measured, 5 restarts in 21 lost records; none in 18 after this fix. Workers always
   start from the earliest offset (``consumer_auto_offset_reset``), so such a partition
   goes back to its beginning; the journey logic is idempotent, and reading a record
   twice changes nothing.

2. **Records fetched before a seek are not delivered after it.** Faust resumes the
   stream partitions before it seeks them to the committed offsets, so records from
   the old position arrive while the seek runs. Delivered, they were thrown away when
   the flow resumed, and the first record after the seek looked like a gap, which
   Faust acknowledges (gaps are how it steps over compacted records): everything in
   between was lost. Here fetches made before or during the seek are dropped, the
   committed record counts as not yet read, and a gap is first taken for records
   skipped: the partition is fetched again from the first missing offset, and only a
   gap still there then is acknowledged. Measured with a worker joining mid-stream:
   Faust's own fetch loop lost records in 2 runs of 5; none in 6 with all of this (and
   1 in 11 with the first part alone).

3. **A rebalance is watched once per fetch, not once per record.** Faust's fetch loop
   races each record's delivery against ``suspend_flow`` (four futures and an
   ``asyncio.wait`` per record, about 40 µs, a sixth of a worker's time per event). Here
   a whole fetch is delivered inside one such race: a rebalance still cancels the
   delivery wherever it blocks, and the records not delivered are read again after the
   seek to the committed offsets. Measured with ``bench/throughput.py``: about 4,400
   events/s before, 5,000 to 5,800 after.

Which broker needs which: all of them, on both. Every correction here is of the client
(Faust's stream and table machinery, aiokafka's consumer), none of a broker's answer, so
none is gated to tansu. ``tests/test_transport_corrections.py`` shows aiokafka leaving a
never-committed partition where the fetcher is on tansu and on Apache Kafka alike
(correction 1) and the correction's seek fixing it; the kill -9, worker-joining and
poison-message tests run on both brokers with all of them. What only tansu needed lives
elsewhere and is gated there: end-of-input markers instead of end offsets (its
ListOffsets answers wrong), the idempotent producer off by default (it has none).

The app selects this transport by the URL scheme ``journeys+kafka://`` (registered as a
``faust.transports`` entry point in ``pyproject.toml``). The corrections follow
faust-streaming 0.15's ``Consumer``, hence its pin in ``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as kafka_driver
from faust.types import TP, Message
from mode import ServiceT

from runtime.logs import get_logger

log = get_logger("streams.transport")

SCHEME = "journeys+kafka"
SUPPORTED_FAUST = "0.15."

if not faust.__version__.startswith(SUPPORTED_FAUST):
    raise ImportError(
        f"faust-streaming {faust.__version__} is installed; streams.transport overrides private parts of "
        f"faust-streaming {SUPPORTED_FAUST}x only: install 'faust-streaming>=0.15,<0.16'"
    )


EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: a supervisor restarts the worker


async def each_batch(stream: Any, size: int, within: float, handle: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
    """``handle`` every batch of ``stream``; a batch that raises or is cancelled ends the process."""
    async for events in stream.take_events(size, within=within):
        try:
            await handle(events)
        except BaseException as error:
            stopping = isinstance(error, asyncio.CancelledError)
            log.error("batch_not_finished_exiting", events=len(events), stopping=stopping,
                      error=f"{type(error).__name__}: {error}"[:1000],
                      traceback="".join(traceback.format_exception(error))[-4000:])
            sys.stdout.flush()
            sys.stderr.flush()
            # Not `raise`: take_events' finally would acknowledge the unfinished batch.
            os._exit(0 if stopping else EXIT_BATCH_FAILED)


async def broker_reachable(app: Any, timeout_s: float = 2.0) -> bool:
    """Whether the Kafka cluster answers a metadata request now, through the app's producer
    (its client lives on the app's event loop; the consumer's runs in a thread of its own).
    Faust's own readiness (no rebalance, tables recovered) stays true while the broker is
    gone; this is what ``/readyz`` adds."""
    try:
        client = app.producer._ensure_producer().client
        return bool(await asyncio.wait_for(client.force_metadata_update(), timeout_s))
    except Exception:  # noqa: BLE001 - any failure to answer is "not reachable"
        return False


def write_tables_as(event: Any) -> None:
    """Make Faust's tables write to the changelog partition (and store) of ``event``.

    Only this task's context variable is set: ``Stream._set_current_event`` would also
    overwrite the stream's attribute that ``take_events`` reads to pair the next buffered
    value with its event, silently swapping a new message for an old one.
    """
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


async def drain_changelog_buffer(app: Any) -> None:
    """Wait until the broker acknowledged every record produced so far (acks as configured):
    the batch's table writes and its output records.

    Faust queues changelog writes in a buffer that a background task drains one record
    at a time; ``buffer.size`` drops to 0 while the last record is still on its way into
    aiokafka (waiting for room in its partition's batch), where neither Faust's pre-commit
    flush (which also gives up after 0.1 s) nor aiokafka's flush (which waits only for
    batches that exist when it starts, and ignores failures) waits for it: offsets could be
    committed for events whose new state was never written (measured: a fact lost after
    kill -9). Waiting here, before the batch's events are acknowledged, keeps
    at-least-once true whatever the commit does. A record the broker refused, or none
    acknowledged within ``broker_request_timeout``, raises: the batch fails
    (:func:`each_batch` ends the process before anything is committed).
    """
    pending = list(app.producer.unacknowledged)
    if not pending:
        return
    timeout = app.conf.broker_request_timeout
    # asyncio.wait, not wait_for(gather): a timeout must not cancel the sends themselves.
    done, not_done = await asyncio.wait(pending, timeout=timeout)
    if not_done:
        raise TimeoutError(f"{len(not_done)} produced records not acknowledged by the broker in {timeout:g} s")
    for future in done:
        future.result()  # a record the broker refused fails the batch

Fetched = Sequence[tuple[TP, Message]]


class Consumer(kafka_driver.Consumer):
    """Faust's aiokafka consumer with the corrections above."""

    seeks = 0  # how many seeks to the committed offsets have finished
    seeking = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refetched_from: dict[TP, int] = {}
        self._sought_to: Mapping[TP, int] = {}

    async def perform_seek(self) -> None:
        self.seeking = True
        self._refetched_from.clear()  # positions from before this seek say nothing about gaps after it
        try:
            await super().perform_seek()
            # Faust records the committed offset, the next one to read, as the last one
            # read; a gap after it would then skip the committed record itself.
            for tp, offset in self._sought_to.items():
                if offset:
                    self._read_offset[tp] = offset - 1
        finally:
            self.seeking = False
            self.seeks += 1

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = self._sought_to = await super().seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items() if not offset and not self._is_changelog_tp(tp)]
        if uncommitted:
            await self._thread.seek_to_beginning(*uncommitted)
        return committed

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = [item async for item in self.getmany(timeout=1.0)]
                # getmany can return at once many times in a row without giving up the loop.
                await self.sleep(0)
                await self._deliver_fetch(fetched)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver_fetch(self, fetched: Fetched) -> None:
        """Deliver until done or the flow stops; commits every ``broker_commit_every`` acks in between."""
        remaining = fetched
        seeks = self.seeks
        refetching: set[TP] = set()
        while remaining and not self.should_stop:
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            delivery = self._deliver_until_commit_due(remaining, seeks, refetching)
            race = await self.wait_first(delivery, self.suspend_flow.wait())
            if delivery not in race.done:
                return
            remaining = race.results[race.done.index(delivery)]

    async def _deliver_until_commit_due(self, fetched: Fetched, seeks: int, refetching: set[TP]) -> Fetched:
        """Hand records to the streams; return the ones left when a commit falls due.

        Records fetched before or during a seek to the committed offsets (the end of
        a rebalance) are not delivered: they come again from the new position. Faust
        resumes the partitions before it seeks them, so records from the old position
        arrive while the seek runs; delivered, they were thrown away when the flow
        resumed, and the next record after the seek looked like a gap, which Faust
        acknowledges (gaps are how it steps over compacted records): the records in
        between were lost.

        For the same reason a gap is first taken for records this worker skipped: the
        partition is fetched again from the first missing offset (``refetching``), and
        only a gap that is still there then is acknowledged.
        """
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        for index, (tp, message) in enumerate(fetched):
            if self.seeking or self.seeks != seeks:
                return ()
            if commit_every is not None and self._n_acked >= commit_every:
                return fetched[index:]
            if tp in refetching:
                continue
            offset = message.offset
            last_read = read_offset[tp]
            if last_read is not None and offset < last_read:
                continue  # already delivered before a seek back: Faust drops these too
            if last_read and offset - last_read > 1 and acks_enabled_for(message.topic):
                if self._refetched_from.get(tp) != last_read + 1:
                    self.log.info("Fetching %r again from %r: offsets up to %r were not delivered",
                                  tp, last_read + 1, offset - 1)
                    self._refetched_from[tp] = last_read + 1
                    self._thread.seek(tp, last_read + 1)
                    refetching.add(tp)
                    continue
                await self._add_gap(tp, last_read + 1, offset)
            await callback(message)
            read_offset[tp] = offset
            if index % 100 == 99:
                await asyncio.sleep(0)
        return ()


class Producer(kafka_driver.Producer):
    """Faust's producer, idempotent when asked (``JOURNEYS_IDEMPOTENT_PRODUCER``): Faust turns
    idempotence on only with ``exactly_once``. A broker retry then never writes a message
    twice. tansu has no idempotent producer, so it stays off by default."""

    idempotent = False  # set by streams.worker.create_app from the settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every record handed to the producer until the broker acknowledges it (or refuses it).
        self.unacknowledged: set[asyncio.Future[Any]] = set()

    def _track(self, future: Any) -> None:
        if not future.done():
            self.unacknowledged.add(future)
            future.add_done_callback(self.unacknowledged.discard)

    def send_soon(self, fut: Any) -> None:
        """Table changelog writes (``Table.send_changelog``): tracked from the moment they are queued."""
        self._track(fut)
        super().send_soon(fut)

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        """Output, patient-update, dead-letter and rerouted records (``Topic.send``)."""
        future = await super().send(*args, **kwargs)
        self._track(future)
        return future

    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        if self.idempotent:
            extra.update(acks="all", enable_idempotence=True)
        return extra


class Transport(kafka_driver.Transport):
    Consumer = Consumer
    Producer = Producer
