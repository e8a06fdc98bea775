"""The journey and patient processors: batches of facts in, versioned rows out.

Transport-free: a processor works against any mutable mapping of key -> state bytes
(a Faust table in the worker, a dict offline), so the same code runs live, in a
replay and in tests. Event time only: the :class:`Watermark` is the largest
``occurred_at`` seen less the allowed lateness, and per-partition :class:`Timers`
re-evaluate journeys when it passes their deadlines (no-show, close, eviction).

>>> from journey.processor import JourneyProcessor
>>> from journey.metrics import JourneyPolicy
>>> processor = JourneyProcessor(JourneyPolicy(), rules=(), lateness_ms=0, retention_ms=86_400_000)
>>> store = {}
>>> booked = [0, "appointment.booked", "cadence", "b1", "s1", "cardiology", "dr1", "pk",
...     {"scheduled_start": 3_600_000, "duration_min": 20, "visit_type": "new", "modality": "in_person"}]
>>> [e.bundle["appointment_journeys"][0]["status"] for e in processor.process(store, 0, {"a1": [booked]})]
['scheduled']
>>> processor.watermark.finish(3_600_000 + 30 * 60_000)
>>> [e.bundle["appointment_journeys"][0]["status"] for e in processor.fire(store, 0)]
['no_show']
"""

from __future__ import annotations

import functools
import gc
import heapq
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from journey.facts import FIELDS, MS, Fact
from journey.friction import Rule
from journey.metrics import JourneyPolicy
from journey.patient import PatientEmission, PatientState
from journey.state import Emission, JourneyState

NO_WATERMARK = -(2**62)

_Call = TypeVar("_Call", bound=Callable[..., Any])


def _collector_paused(method: _Call) -> _Call:
    """Run ``method`` with the cyclic garbage collector paused (it runs again afterwards).

    A batch allocates tens of thousands of dicts and lists (rows, facts, states) and no
    reference cycles, so reference counting frees all of it; left running, the collector
    rescans every live row again and again as they pile up (a third of the offline
    pipeline's time). Anything cyclic is still collected at the next collection after
    the batch."""

    @functools.wraps(method)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return method(*args, **kwargs)
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            gc.enable()

    return paused  # type: ignore[return-value]


class Watermark:
    """Largest event time seen, less the allowed lateness; end of input makes it exact."""

    __slots__ = ("lateness_ms", "max_seen_ms", "finished_ms")

    def __init__(self, lateness_ms: int):
        self.lateness_ms = lateness_ms
        self.max_seen_ms = NO_WATERMARK
        self.finished_ms = NO_WATERMARK

    def observe(self, occurred_ms: int) -> None:
        if occurred_ms > self.max_seen_ms:
            self.max_seen_ms = occurred_ms

    def finish(self, end_ms: int) -> None:
        """End of input: everything up to ``end_ms`` has been seen, lateness no longer applies."""
        self.finished_ms = max(self.finished_ms, end_ms)

    @property
    def value(self) -> int:
        live = self.max_seen_ms - self.lateness_ms if self.max_seen_ms != NO_WATERMARK else NO_WATERMARK
        return max(live, self.finished_ms)


@dataclass(slots=True)
class Timers:
    """Deadlines per key in a heap; a key may be pushed many times (firing is idempotent)."""

    heap: list[tuple[int, str]] = field(default_factory=list)

    def push(self, key: str, deadlines: Iterable[int]) -> None:
        for deadline in deadlines:
            heapq.heappush(self.heap, (deadline, key))

    def push_future(self, key: str, deadlines: Iterable[int], watermark_ms: int) -> None:
        """Schedule the deadlines still ahead of the watermark (a passed one would fire again at once)."""
        self.push(key, (d for d in deadlines if d > watermark_ms))

    def pop_due(self, watermark_ms: int) -> list[str]:
        due: dict[str, None] = {}
        while self.heap and self.heap[0][0] <= watermark_ms:
            due[heapq.heappop(self.heap)[1]] = None
        return list(due)


class JourneyProcessor:
    """Applies facts to journey states and emits new versions; fires event-time timers."""

    def __init__(self, policy: JourneyPolicy, rules: tuple[Rule, ...], lateness_ms: int, retention_ms: int):
        self.policy = policy
        self.rules = rules
        self.retention_ms = retention_ms
        self.watermark = Watermark(lateness_ms)
        self.timers: dict[int, Timers] = {}
        self.late_events = 0
        self.duplicates = 0

    @_collector_paused
    def process(
        self, store: MutableMapping[str, bytes], partition: int, batch: Mapping[str, list[Fact]]
    ) -> list[Emission]:
        """Apply each appointment's new facts (one state read and write per appointment).

        Call :meth:`observe` with the whole input batch first, so that every partition of
        a batch is evaluated at the same watermark."""
        watermark = self.watermark.value
        emissions = []
        for appointment_id, facts in batch.items():
            raw = store.get(appointment_id)
            state = JourneyState.from_bytes(raw) if raw is not None else JourneyState()
            for fact in facts:
                self.duplicates += not state.add(fact)
            emission = self._evaluate(store, partition, appointment_id, state, watermark)
            if emission is not None:
                emissions.append(emission)
        return emissions

    def observe(self, occurred_ms: Iterable[int]) -> None:
        """Advance the watermark over a batch's event times; count those older than it was (late)."""
        watermark_before = self.watermark.value
        for moment in occurred_ms:
            self.late_events += moment < watermark_before
            self.watermark.observe(moment)

    @_collector_paused
    def fire(self, store: MutableMapping[str, bytes], partition: int) -> list[Emission]:
        """Re-evaluate the journeys of ``partition`` whose deadlines the watermark passed."""
        timers = self.timers.get(partition)
        if timers is None:
            return []
        watermark = self.watermark.value
        emissions = []
        for appointment_id in timers.pop_due(watermark):
            raw = store.get(appointment_id)
            if raw is None:
                continue
            emission = self._evaluate(store, partition, appointment_id, JourneyState.from_bytes(raw), watermark)
            if emission is not None:
                emissions.append(emission)
        return emissions

    def reschedule(self, store: Mapping[str, bytes], partitions: set[int]) -> int:
        """After a restart or rebalance: re-evaluate the stored journeys of ``partitions``."""
        return _reschedule(self.timers, store, partitions)

    def _evaluate(
        self, store: MutableMapping[str, bytes], partition: int, appointment_id: str, state: JourneyState, watermark: int
    ) -> Emission | None:
        emission, deadlines = state.evaluate(appointment_id, watermark, self.policy, self.rules)
        if emission is not None:
            emission.patient_update["watermark"] = watermark
        elif _evictable(state, watermark, self.policy, self.retention_ms):
            store.pop(appointment_id, None)
            return None
        evict_at = max(deadlines, default=watermark) + self.retention_ms
        self.timers.setdefault(partition, Timers()).push_future(appointment_id, (*deadlines, evict_at), watermark)
        if state.dirty:
            state.partition = partition
            store[appointment_id] = state.to_bytes()
            state.dirty = False
        return emission


def _evictable(state: JourneyState, watermark: int, policy: JourneyPolicy, retention_ms: int) -> bool:
    """A closed journey is dropped once it is older than the retention, in event time."""
    latest = max(fact[MS] for fact in state.facts.values())
    starts = [fact[FIELDS]["scheduled_start"] for fact in state.facts.values() if "scheduled_start" in fact[FIELDS]]
    anchor = max([latest, *starts])
    return watermark >= anchor + policy.close_after_ms + retention_ms


def _reschedule(timers: dict[int, Timers], store: Mapping[str, bytes], partitions: set[int]) -> int:
    timers.clear()
    count = 0
    for key, raw in store.items():
        if raw is None:  # a deleted (evicted) key, as a changelog tombstone may restore it
            continue
        partition = orjson.loads(raw)["p"]
        if partition in partitions:
            timers.setdefault(partition, Timers()).push(key, (NO_WATERMARK + 1,))
            count += 1
    return count


class PatientProcessor:
    """Folds appointment versions into per-patient states keyed by ``patient_key``."""

    def __init__(self) -> None:
        self.watermark = Watermark(0)
        self.timers: dict[int, Timers] = {}

    @_collector_paused
    def process(
        self, store: MutableMapping[str, bytes], partition: int, batch: Mapping[str, list[dict[str, Any]]]
    ) -> list[PatientEmission]:
        emissions = []
        for patient_key, updates in batch.items():
            raw = store.get(patient_key)
            state = PatientState.from_bytes(raw) if raw is not None else PatientState()
            for update in updates:
                self.watermark.observe(update["watermark"])
                state.update(update)
            emission = self._evaluate(store, partition, patient_key, state)
            if emission is not None:
                emissions.append(emission)
        return emissions

    def reschedule(self, store: Mapping[str, bytes], partitions: set[int]) -> int:
        return _reschedule(self.timers, store, partitions)

    @_collector_paused
    def fire(self, store: MutableMapping[str, bytes], partition: int) -> list[PatientEmission]:
        timers = self.timers.get(partition)
        if timers is None:
            return []
        emissions = []
        for patient_key in timers.pop_due(self.watermark.value):
            raw = store.get(patient_key)
            if raw is not None:
                emission = self._evaluate(store, partition, patient_key, PatientState.from_bytes(raw))
                if emission is not None:
                    emissions.append(emission)
        return emissions

    def _evaluate(
        self, store: MutableMapping[str, bytes], partition: int, patient_key: str, state: PatientState
    ) -> PatientEmission | None:
        watermark = self.watermark.value
        emission, deadlines = state.evaluate(patient_key, watermark)
        self.timers.setdefault(partition, Timers()).push_future(patient_key, deadlines, watermark)
        if emission is not None:
            state.partition = partition
            store[patient_key] = state.to_bytes()
        return emission
