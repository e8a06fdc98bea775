"""One batch through the journey logic: accept, observe, process, fire, route.

Written once and used by the Faust worker and the offline pipeline alike; the caller
brings the records and the state stores, and sends what comes out. No transport here:
a store is any mutable mapping of key -> state bytes, and the patient partitioner is
injected (the worker passes Kafka's murmur2, the offline pipeline a single partition).

>>> from journey.batch import JourneyStep, PatientStep, Record
>>> from journey.ingest import Edge
>>> from journey.metrics import JourneyPolicy
>>> from journey.processor import JourneyProcessor, JourneyStores, PatientProcessor
>>> from journey.pseudonym import Pseudonymizer
>>> step = JourneyStep(Edge(Pseudonymizer(b"k" * 32)),
...     JourneyProcessor(JourneyPolicy(), rules=(), lateness_ms=0, retention_ms=0), lambda key: 0)
>>> booked = (b'{"event_id": "b1", "event_type": "appointment.booked", "schema_version": 1,'
...     b' "occurred_at": "2026-03-01T09:00:00Z", "source": "cadence", "patient_id": "p1",'
...     b' "appointment_id": "a1", "site_id": "s1", "department": "cardiology",'
...     b' "scheduled_start": "2026-03-02T09:00:00Z", "duration_min": 20, "visit_type": "new",'
...     b' "modality": "in_person"}')
>>> stores = JourneyStores(hot={}, archive={})
>>> out = step.run([Record(booked, None, 0, 1), Record(b"{", None, 0, 2)], lambda partition: stores)
>>> [row["status"] for row in out.rows("appointment_journeys")], [d.reason for _, d in out.dead]
(['scheduled'], ['malformed_json'])
>>> patients = PatientStep(PatientProcessor())
>>> [row["appointments"] for b in patients.run(out.patient_updates, lambda partition: {}).bundles
...  for row in b.get("patient_journeys", ())]
[1]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from journey.facts import MS, Fact
from journey.ingest import Accepted, DeadLetter, Edge
from journey.patient import PatientEmission
from journey.processor import JourneyProcessor, JourneyStores, PatientProcessor, collector_paused
from journey.state import Bundle, Emission
from schemas.timestamps import DAY_MS

# What to do with an event read off its appointment's partition (JOURNEYS_WRONG_KEY).
WrongKey = Literal["reroute", "deadletter"]


Store = MutableMapping[str, bytes]
# The stores of a partition. The worker's also point Faust's table writes at that
# partition's changelog, so they are asked for right before the partition is processed.
StoresFor = Callable[[int], JourneyStores]
StoreFor = Callable[[int], Store]
PatientUpdates = dict[int, dict[str, list[dict[str, Any]]]]


@dataclass(slots=True)
class Record:
    """One input message: its bytes and where it came from (``topic=None``: a file line)."""

    value: bytes
    topic: str | None
    partition: int
    offset: int
    key: bytes | None = None


@dataclass
class StepOutput:
    """What a batch gives: row bundles, dead letters with their records, patient updates
    by patient partition and then patient key."""

    bundles: list[Bundle] = field(default_factory=list)
    dead: list[tuple[Record, DeadLetter]] = field(default_factory=list)
    patient_updates: PatientUpdates = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # Events read off their appointment's partition: (record, appointment_id, home partition).
    rerouted: list[tuple[Record, str, int]] = field(default_factory=list)
    versions: int = 0
    valid: int = 0

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [row for bundle in self.bundles for row in bundle.get(table, ())]


class JourneyStep:
    """Facts of a batch into journey states; new versions out, routed.

    ``too_late_ms``: a fact older than the watermark by more than this is refused as
    ``too_late`` (a dead letter, counted) instead of reopening a journey that old.
    """

    def __init__(self, edge: Edge, journeys: JourneyProcessor, patient_partition: Callable[[str], int],
                 too_late_ms: int | None = None, home_partition: Callable[[str], int] | None = None,
                 wrong_key: WrongKey = "reroute"):
        self.edge = edge
        self.journeys = journeys
        self.patient_partition = patient_partition
        self.too_late_ms = too_late_ms
        self.too_late = 0
        # Where an appointment's events belong (the partitioner of its key). An event read
        # elsewhere (keyed with something else, or nothing) would open a second journey
        # state on another worker: it is sent on to its home partition, or dead-lettered.
        self.home_partition = home_partition
        self.wrong_key = wrong_key

    @collector_paused
    def run(self, records: Sequence[Record], stores_for: StoresFor, received_ms: int | None = None,
            now_s: float = 0.0) -> StepOutput:
        """Validate every record, advance the watermark over the whole batch, then apply
        each partition's facts and fire its due timers (one state read and write per
        touched appointment). ``received_ms`` (wall clock) bounds how far ahead an event
        may be dated; ``now_s`` (processing time) tells quiet inputs (see ``Watermark``)."""
        out = StepOutput()
        accepted: list[tuple[Record, Accepted]] = []
        partitions: dict[int, dict[str, list[Fact]]] = {}
        for record in records:
            partitions.setdefault(record.partition, defaultdict(list))
            outcome = self.edge.accept(record.value, record.topic, record.partition, record.offset, received_ms)
            if isinstance(outcome, Accepted):
                accepted.append((record, outcome))
            else:
                out.dead.append((record, outcome))
        # The whole batch first, so that every partition of it is evaluated at one watermark.
        self.journeys.observe((((record.topic, record.partition), outcome.fact[MS]) for record, outcome in accepted),
                              now_s)
        too_late_ms = self.too_late_ms
        horizon = None if too_late_ms is None else self.journeys.watermark.value - too_late_ms
        events: list[dict[str, Any]] = []
        for record, outcome in accepted:
            if self.home_partition is not None and record.topic is not None:
                home = self.home_partition(outcome.appointment_id)
                if home != record.partition:
                    if self.wrong_key == "reroute":
                        out.rerouted.append((record, outcome.appointment_id, home))
                    else:
                        out.dead.append((record, self.edge.refuse(
                            "wrong_key", f"key {record.key!r} is not appointment_id {outcome.appointment_id!r}: "
                            f"read on partition {record.partition}, belongs on {home}", record.topic,
                            record.partition, record.offset, received_ms)))
                    continue
            if horizon is not None and too_late_ms is not None and outcome.fact[MS] < horizon:
                self.too_late += 1
                out.dead.append((record, self.edge.refuse(
                    "too_late", f"occurred_at: more than {too_late_ms / DAY_MS:g} days before the watermark "
                    "(JOURNEYS_TOO_LATE_AFTER_DAYS)", record.topic, record.partition, record.offset, received_ms)))
                continue
            partitions[record.partition][outcome.appointment_id].append(outcome.fact)
            events.append(outcome.row)
        for partition, facts in partitions.items():
            stores = stores_for(partition)
            self._route(self.journeys.process(stores, partition, facts), out)
            self._route(self.journeys.fire(stores, partition), out)
        if self.journeys.poisoned:
            events = self._poisoned(accepted, events, out, received_ms)
        out.valid = len(events)
        if out.dead:
            out.bundles.append({"deadletters": [dead.row for _, dead in out.dead]})
        if events:
            out.bundles.append({"events": events})
        return out

    def _poisoned(self, accepted: list[tuple[Record, Accepted]], events: list[dict[str, Any]], out: StepOutput,
                  received_ms: int | None) -> list[dict[str, Any]]:
        """Facts the journey logic raised on become ``processing_error`` dead letters (with the
        error), and leave the batch's events: nothing reaches ClickHouse that is not in its journey."""
        errors = {id(fact): error for fact, error in self.journeys.poisoned}
        self.journeys.poisoned.clear()
        poisoned_rows = set()
        for record, outcome in accepted:
            error = errors.get(id(outcome.fact))
            if error is not None:
                poisoned_rows.add(id(outcome.row))
                out.dead.append((record, self.edge.refuse("processing_error", error, record.topic, record.partition,
                                                          record.offset, received_ms)))
        return [row for row in events if id(row) not in poisoned_rows]

    @collector_paused
    def fire(self, partition: int, stores: JourneyStores) -> StepOutput:
        """Only the timers of ``partition`` (after the watermark moved without new facts)."""
        out = StepOutput()
        self._route(self.journeys.fire(stores, partition), out)
        return out

    def _route(self, emissions: Iterable[Emission], out: StepOutput) -> None:
        for emission in emissions:
            out.bundles.append(emission.bundle)
            update = emission.patient_update
            out.patient_updates[self.patient_partition(update["patient_key"])][update["patient_key"]].append(update)
            out.versions += 1


@dataclass
class PatientOutput:
    bundles: list[Bundle] = field(default_factory=list)
    versions: int = 0


class PatientStep:
    """Journey versions into per-patient states; patient rows out."""

    def __init__(self, patients: PatientProcessor):
        self.patients = patients

    @collector_paused
    def run(self, updates: Mapping[int, Mapping[str, list[dict[str, Any]]]], store_for: StoreFor,
            partitions: Iterable[int] = ()) -> PatientOutput:
        """Fold each partition's updates, then fire its due timers; ``partitions``: more
        partitions whose timers to fire though no update came for them."""
        out = PatientOutput()
        for partition in dict.fromkeys([*updates, *partitions]):
            store = store_for(partition)
            self._collect(self.patients.process(store, partition, updates.get(partition, {})), out)
            self._collect(self.patients.fire(store, partition), out)
        return out

    @staticmethod
    def _collect(emissions: Iterable[PatientEmission], out: PatientOutput) -> None:
        for emission in emissions:
            out.bundles.append(emission.bundle)
            out.versions += 1
