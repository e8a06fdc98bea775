"""The per-appointment journey state machine and what it emits.

A :class:`JourneyState` is the deduplicated set of an appointment's facts plus the
version and row keys it last emitted. Applying facts is idempotent and commutative;
:meth:`JourneyState.evaluate` turns the state and a watermark into versioned rows.

The version is ``4 * copies + stage``: ``copies`` counts every distinct copy of every
event seen (a redelivery is the same copy; a second copy of one ``event_id`` with a
different payload is another), and stage records what the watermark alone decided: a
no-show inferred at the deadline (1), the journey closed (2). Copies only grow and, for
given facts, these only turn on as the watermark passes, so a later state always carries
a larger version, and the same copies at the same stage always give the same rows, in
any arrival order: the ClickHouse tables keep the row with the largest version.

Of two copies of one event, the journey keeps the one with the smallest
:func:`journey.facts.fact_digest`, whatever order they came in; ``journeys.events``
keeps the same one (its ``copy_rank`` orders copies the same way).

>>> from journey.state import JourneyState
>>> from journey.metrics import JourneyPolicy
>>> state = JourneyState()
>>> arrived = [1_000, "patient.arrived", "kiosk", "e1", "s1", "cardiology", None, "pk", {}]
>>> state.add(arrived), state.add(list(arrived))
(True, False)
>>> emission, deadlines = state.evaluate("a1", watermark_ms=0, policy=JourneyPolicy(), rules=())
>>> emission.version, emission.bundle["appointment_journeys"][0]["status"]
(4, 'in_progress')
>>> state.evaluate("a1", watermark_ms=0, policy=JourneyPolicy(), rules=())[0] is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from journey.facts import DEPARTMENT, EVENT_ID, FIELDS, MS, PATIENT, PROVIDER, SITE, SOURCE, TYPE, Fact, fact_digest
from journey.friction import Rule
from journey.friction import evaluate as evaluate_friction
from journey.metrics import (
    JourneyPolicy,
    JourneyView,
    StageClock,
    compute_journey,
    stage_deadlines,
    watermark_stage,
)
from schemas.tables import tombstone

Bundle = dict[str, list[dict[str, Any]]]

_CONTEXT_COLUMNS = ("site_id", "department", "provider_id")


@dataclass(slots=True)
class Emission:
    """What one new journey version sends downstream."""

    version: int
    bundle: Bundle
    patient_update: dict[str, Any]


class JourneyState:
    """Facts keyed by (source, event_id), and the row keys of the last emitted version.

    Stored as a header line (version, partition, clock, row keys, fact count, anchor)
    and the facts after it, packed (:class:`PackedFacts`). Reading a state decodes the
    header only; the facts are decoded on first use, so a timer that finds nothing new
    (most of them) costs a hundred bytes of JSON, not the journey.
    """

    __slots__ = ("_facts", "_raw", "_packed", "_count", "_anchor", "others", "version", "emitted", "partition",
                 "dirty", "clock")

    def __init__(self, facts: dict[str, Fact] | None = None, version: int = 0, emitted: list[str] | None = None,
                 partition: int = 0, others: dict[str, list[int]] | None = None):
        self._facts: dict[str, Fact] | None = facts or {}
        # The stored bytes of the facts while they are not decoded, or not changed since they were.
        self._raw: bytes | None = None
        # The packed form of the facts, kept in step as facts are added (None: to be packed anew).
        self._packed: PackedFacts | None = None if facts else PackedFacts([], [])
        self._count = len(self._facts)
        # The latest moment the journey is anchored at (see `anchor`); None: not known yet.
        self._anchor: int | None = None
        # Digests of the copies seen besides the kept one, per dedupe key (rare: conflicting resends).
        self.others: dict[str, list[int]] = others or {}
        self.version = version
        self.emitted: list[str] = emitted or []
        # The source partition, kept so that timers can be rebuilt per partition after a rebalance.
        self.partition = partition
        # Whether the stored bytes are behind this object: unchanged states are not rewritten.
        self.dirty = False
        # The stage clock of these facts as last evaluated (None: unknown, or the facts changed since).
        self.clock: StageClock | None = None

    @property
    def facts(self) -> dict[str, Fact]:
        facts = self._facts
        if facts is None:
            assert self._raw is not None
            self._packed = PackedFacts.from_bytes(self._raw)
            facts = self._facts = self._packed.facts()
        return facts

    @property
    def anchor(self) -> int:
        """The latest of the facts' event times and scheduled starts: a journey closes a
        fixed time after it (``journey.processor``'s archive)."""
        anchor = self._anchor
        if anchor is None:
            facts = self.facts.values()
            anchor = max(fact[MS] for fact in facts)
            for fact in facts:
                start = fact[FIELDS].get("scheduled_start")
                if start is not None and start > anchor:
                    anchor = start
            self._anchor = anchor
        return anchor

    # -- persistence ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        # The row keys by table ("table|key" in `emitted`): each table's name once.
        emitted: dict[str, list[str]] = {}
        for stored in self.emitted:
            table, _, key = stored.partition("|")
            emitted.setdefault(table, []).append(key)
        header: dict[str, Any] = {"v": self.version, "p": self.partition, "c": self.clock, "e": emitted,
                                  "n": self._count}
        if self._count:
            header["a"] = self.anchor
        if self.others:
            header["o"] = self.others
        raw = self._raw
        if raw is None:
            packed = self._packed
            if packed is None:
                packed = self._packed = PackedFacts.of(self.facts.values())
            raw = self._raw = packed.to_bytes()
        return orjson.dumps(header) + b"\n" + raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> JourneyState:
        """A stored state, packed or as written before facts were packed (one JSON object):

        >>> old = b'{"f":[[1000,"patient.arrived","kiosk","e1","s1","d",null,"pk",{}]],"v":4,"e":[],"p":2}'
        >>> state = JourneyState.from_bytes(old)
        >>> again = JourneyState.from_bytes(state.to_bytes())
        >>> again.version, again.partition, again.copies, again.anchor, again.facts == state.facts
        (4, 2, 1, 1000, True)
        >>> state.emitted = ["queue_waits|lobby\x1fkiosk/w1", "stage_intervals|cycle", "stage_intervals|lobby"]
        >>> JourneyState.from_bytes(state.to_bytes()).emitted == state.emitted
        True
        """
        cut = raw.find(b"\n")  # orjson escapes newlines inside strings: the first one ends the header
        if cut < 0:
            return cls._from_unpacked(raw)
        header = orjson.loads(memoryview(raw)[:cut])
        emitted = [f"{table}|{key}" for table, keys in header["e"].items() for key in keys]
        state = cls(None, header["v"], emitted, header["p"], header.get("o"))
        state._facts, state._raw, state._packed, state._count = None, raw[cut + 1:], None, header["n"]
        state._anchor = header.get("a")
        state.clock = header["c"]
        return state

    @classmethod
    def _from_unpacked(cls, raw: bytes) -> JourneyState:
        """A state stored before facts were packed: one JSON object with the facts as lists."""
        data = orjson.loads(raw)
        # The dedupe key inline (`_dedupe_key`): a call per fact is a third of the cost.
        state = cls({f"{f[SOURCE]}\x1f{f[EVENT_ID]}": f for f in data["f"]}, data["v"], data["e"], data["p"],
                    data.get("o"))
        state.clock = data.get("c")  # absent in states written before the clock was kept
        return state

    @staticmethod
    def partition_in(raw: bytes) -> int:
        """The source partition of a stored state, without decoding its facts."""
        cut = raw.find(b"\n")
        return int(orjson.loads(memoryview(raw)[:cut] if cut >= 0 else raw)["p"])

    # -- transitions -----------------------------------------------------------------

    @property
    def copies(self) -> int:
        return self._count + sum(map(len, self.others.values()))

    def _changed(self) -> None:
        self._raw, self._anchor, self._count = None, None, len(self.facts)
        self.dirty = True
        self.clock = None

    def add(self, fact: Fact) -> bool:
        """Add a fact; ``False`` for a duplicate. A copy with another payload counts as a
        new copy (the version grows), and of all copies the one with the smallest digest
        is kept, so the surviving copy does not depend on arrival order."""
        key = _dedupe_key(fact)
        known = self.facts.get(key)
        if known is None:
            self.facts[key] = fact
            if self._packed is not None:
                self._packed.append(fact)
            self._changed()
            return True
        if known == fact:
            return False
        digest, known_digest = fact_digest(fact), fact_digest(known)
        others = self.others.setdefault(key, [])
        if digest in others or digest == known_digest:
            return False
        if digest < known_digest:
            self.facts[key] = fact
            self._packed = None  # a row replaced in place: packed anew when stored
            others.append(known_digest)
        else:
            others.append(digest)
        others.sort()
        self._changed()
        return False

    def evaluate(
        self, appointment_id: str, watermark_ms: int, policy: JourneyPolicy, rules: tuple[Rule, ...]
    ) -> tuple[Emission | None, tuple[int, ...]]:
        """The next version's rows (``None`` when nothing changed since the last one), and
        the event times at which the journey must be evaluated again."""
        if self.clock is not None:
            # The facts are those last evaluated (a timer firing): only the watermark moved,
            # and the stage is all it can change, so the journey need not be recomputed.
            if 4 * self.copies + watermark_stage(self.clock, watermark_ms, policy) <= self.version:
                return None, stage_deadlines(self.clock, policy)
        view = compute_journey(appointment_id, list(self.facts.values()), watermark_ms, policy)
        self.clock = view.clock
        version = 4 * self.copies + view.stage
        if version <= self.version:
            return None, view.deadlines
        hits = evaluate_friction(view, rules)
        rule_names = sorted({hit["rule"] for hit in hits})
        bundle, keys = _rows(view, hits, rule_names, version)
        if self.emitted:
            gone = set(self.emitted).difference(keys)
            for stale in sorted(gone):
                table, key = stale.split("|", 1)
                bundle[table].append(_tombstone(table, appointment_id, key, version, view.row))
        self.version, self.emitted, self.dirty = version, keys, True
        row = view.row
        patient_update = {
            "appointment_id": appointment_id,
            "version": version,
            "patient_key": row["patient_key"],
            "status": row["status"],
            "scheduled_start": row["scheduled_start"],
            "friction_rules": list(rule_names),
            "site_id": row["site_id"],
            "department": row["department"],
            "provider_id": row["provider_id"],
            "visit_type": row["visit_type"],
        }
        return Emission(version, bundle, patient_update), view.deadlines


def _dedupe_key(fact: Fact) -> str:
    return f"{fact[SOURCE]}\x1f{fact[EVENT_ID]}"


class PackedFacts:
    """A journey's facts as stored, ``[values, rows]``: half their size as plain lists (a
    journey's state stays under a kilobyte). Each row is its fact with the values that
    repeat from fact to fact of a journey (type, source, site, department, provider,
    patient key: a 64-character key stored once, not per fact) and the names of its
    fields replaced by indexes into ``values`` (first-seen order, so the same facts pack
    the same way), the fields as a flat ``[name, value, ...]`` list, and the event time
    of every fact after the first relative to the first's. A fact added is packed on its
    own (:meth:`append`), not the whole journey again.

    >>> packed = PackedFacts.of([[5, "patient.arrived", "kiosk", "e1", "s1", "d", None, "pk", {}],
    ...                          [9, "patient.roomed", "kiosk", "e2", "s1", "d", None, "pk", {"room": "r1"}]])
    >>> packed.to_bytes()
    b'[["patient.arrived","kiosk","s1","d",null,"pk","patient.roomed","room"],[[5,0,1,"e1",2,3,4,5,[]],[4,6,1,"e2",2,3,4,5,[7,"r1"]]]]'
    >>> again = PackedFacts.from_bytes(packed.to_bytes())
    >>> list(again.facts().values())[1]
    [9, 'patient.roomed', 'kiosk', 'e2', 's1', 'd', None, 'pk', {'room': 'r1'}]
    >>> again.append([0, "patient.arrived", "kiosk", "e3", "s1", "d", None, "pk", {}])
    >>> [fact[MS] for fact in PackedFacts.from_bytes(again.to_bytes()).facts().values()]
    [5, 9, 0]
    """

    __slots__ = ("values", "rows", "index")

    def __init__(self, values: list[Any], rows: list[list[Any]]):
        self.values = values
        self.rows = rows
        # Value -> its position in `values`, built when a fact is first appended.
        self.index: dict[Any, int] | None = None

    @classmethod
    def of(cls, facts: Iterable[Fact]) -> PackedFacts:
        packed = cls([], [])
        for fact in facts:
            packed.append(fact)
        return packed

    @classmethod
    def from_bytes(cls, raw: bytes) -> PackedFacts:
        values, rows = orjson.loads(raw)
        return cls(values, rows)

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.values, self.rows])

    def append(self, fact: Fact) -> None:
        index = self.index
        if index is None:
            index = self.index = {value: number for number, value in enumerate(self.values)}
        values = self.values

        def ref(value: Any) -> int:
            number = index.get(value)
            if number is None:
                number = index[value] = len(values)
                values.append(value)
            return number

        rows = self.rows
        ms = fact[MS] - rows[0][MS] if rows else fact[MS]
        rows.append([ms, ref(fact[TYPE]), ref(fact[SOURCE]), fact[EVENT_ID], ref(fact[SITE]), ref(fact[DEPARTMENT]),
                     ref(fact[PROVIDER]), ref(fact[PATIENT]),
                     [item for name, value in fact[FIELDS].items() for item in (ref(name), value)]])

    def facts(self) -> dict[str, Fact]:
        """The facts, keyed for dedupe (as ``JourneyState.facts``), in the rows' order."""
        values = self.values
        facts = {}
        base = None
        for ms, kind, source, event_id, site, department, provider, patient, fields in self.rows:
            if base is None:
                base = ms
            else:
                ms += base
            source = values[source]
            facts[f"{source}\x1f{event_id}"] = [ms, values[kind], source, event_id, values[site], values[department],
                                                values[provider], values[patient],
                                                {values[name]: value for name, value in zip(fields[::2], fields[1::2])}]
        return facts


def _rows(view: JourneyView, hits: list[dict[str, Any]], rule_names: list[str], version: int) -> tuple[Bundle, list[str]]:
    # The view's row becomes the journey row: it is not used elsewhere, so no copy.
    journey = view.row
    journey["version"] = version
    journey["friction_count"] = len(hits)
    journey["friction_rules"] = rule_names
    modality = journey["modality"]
    live = {"version": version, "is_deleted": 0, "appointment_id": journey["appointment_id"],
            "site_id": journey["site_id"], "department": journey["department"], "provider_id": journey["provider_id"]}
    intervals = [{**live, "modality": modality, **interval} for interval in view.intervals]
    waits = [{**live, **wait} for wait in view.queue_waits]
    friction = [{**live, "modality": modality, "scheduled_start": journey["scheduled_start"], **hit} for hit in hits]
    keys = [f"stage_intervals|{i['stage']}" for i in intervals]
    keys += [f"queue_waits|{w['queue']}\x1f{w['wait_key']}" for w in waits]
    keys += [f"friction_events|{f['rule']}\x1f{f['hit_key']}" for f in friction]
    keys.sort()
    bundle: Bundle = {
        "appointment_journeys": [journey],
        "stage_intervals": intervals,
        "queue_waits": waits,
        "friction_events": friction,
    }
    return bundle, keys


def _tombstone(table: str, appointment_id: str, key: str, version: int, row: dict[str, Any]) -> dict[str, Any]:
    """A row that deletes a key the previous version emitted (``table|key`` as in ``emitted``)."""
    context = {column: row[column] for column in _CONTEXT_COLUMNS}
    if table == "stage_intervals":
        return tombstone(table, version, appointment_id=appointment_id, stage=key, modality=row["modality"], **context)
    first, second = key.split("\x1f", 1)
    if table == "queue_waits":
        return tombstone(table, version, appointment_id=appointment_id, queue=first, wait_key=second, **context)
    return tombstone(table, version, appointment_id=appointment_id, rule=first, hit_key=second,
                     modality=row["modality"], **context)
