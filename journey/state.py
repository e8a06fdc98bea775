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

from dataclasses import dataclass
from typing import Any

import orjson

from journey.facts import EVENT_ID, SOURCE, Fact, fact_digest
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
    """Facts keyed by (source, event_id), and the row keys of the last emitted version."""

    __slots__ = ("facts", "others", "version", "emitted", "partition", "dirty", "clock")

    def __init__(self, facts: dict[str, Fact] | None = None, version: int = 0, emitted: list[str] | None = None,
                 partition: int = 0, others: dict[str, list[int]] | None = None):
        self.facts: dict[str, Fact] = facts or {}
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

    # -- persistence ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        data = {"f": list(self.facts.values()), "v": self.version, "e": self.emitted, "p": self.partition,
                "c": self.clock}
        if self.others:
            data["o"] = self.others
        return orjson.dumps(data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> JourneyState:
        data = orjson.loads(raw)
        # The dedupe key inline (`_dedupe_key`): a call per fact is a third of the cost.
        state = cls({f"{f[SOURCE]}\x1f{f[EVENT_ID]}": f for f in data["f"]}, data["v"], data["e"], data["p"],
                    data.get("o"))
        state.clock = data.get("c")  # absent in states written before the clock was kept
        return state

    # -- transitions -----------------------------------------------------------------

    @property
    def copies(self) -> int:
        return len(self.facts) + sum(map(len, self.others.values()))

    def add(self, fact: Fact) -> bool:
        """Add a fact; ``False`` for a duplicate. A copy with another payload counts as a
        new copy (the version grows), and of all copies the one with the smallest digest
        is kept, so the surviving copy does not depend on arrival order."""
        key = _dedupe_key(fact)
        known = self.facts.get(key)
        if known is None:
            self.facts[key] = fact
            self.dirty = True
            self.clock = None
            return True
        if known == fact:
            return False
        digest, known_digest = fact_digest(fact), fact_digest(known)
        others = self.others.setdefault(key, [])
        if digest in others or digest == known_digest:
            return False
        if digest < known_digest:
            self.facts[key] = fact
            others.append(known_digest)
        else:
            others.append(digest)
        others.sort()
        self.dirty = True
        self.clock = None
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
