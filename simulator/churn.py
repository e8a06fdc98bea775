"""Who leaves the practice, and why: the simulator's known effect of friction on patients.

At the end of each simulated day every appointment of the day is settled. A patient
whose visit was completed leaves the practice for good with the department's baseline
chance (higher after a first visit: new patients are less attached), multiplied by
``friction_churn`` when the visit crossed a friction rule, as the pipeline computes
friction; everyone else goes back to their panel, due on their cadence after a visit or
within days after a missed one. Each departure is a :class:`Departure` in the truth, so
an estimate of what friction costs can be checked against the effect that was set.

>>> from simulator.config import SimulationConfig
>>> from simulator.truth import TruthRules
>>> model = ChurnModel(SimulationConfig(friction_churn=1.5, friction_churn_rules={"lobby_wait": 3.0, "high": 2.0}),
...                    TruthRules())
>>> model.multiplier(()), model.multiplier(("room_wait",)), model.multiplier(("room_wait", "lobby_wait"))
(1.0, 1.5, 3.0)
>>> model.multiplier(("telehealth_abandoned",))  # a high-severity rule
2.0
>>> ChurnModel(SimulationConfig(friction_churn_rules={"lobby": 2.0}), TruthRules())  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: friction_churn_rules: 'lobby' is neither a friction rule nor a severity (rules: lobby_wait, ...
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulator.clock import iso_utc
from simulator.config import SimulationConfig
from simulator.model import Visit
from simulator.truth import AppointmentTruth, TruthRules
from simulator.world import World

# Visit types that open a relationship: the patient has not settled in yet.
FIRST_VISIT_TYPES = frozenset({"new_patient", "intake"})
FIRST_VISIT_ATTRITION = 1.6  # times the department's baseline


@dataclass(frozen=True, slots=True)
class Departure:
    """A patient who left after ``appointment_id``: the truth of "patients lost"."""

    patient_id: str
    appointment_id: str
    visit_at_ms: int  # the last visit's scheduled start
    rules: tuple[str, ...]  # friction rules that visit crossed (empty: left anyway)
    probability: float  # the chance of leaving the simulator drew against
    baseline: float  # the chance without friction

    def to_json(self) -> dict[str, Any]:
        return {
            "record": "departure",
            "patient_id": self.patient_id,
            "appointment_id": self.appointment_id,
            "visit_at": iso_utc(self.visit_at_ms),
            "visit_at_ms": self.visit_at_ms,
            "friction_rules": list(self.rules),
            "probability": round(self.probability, 6),
            "baseline": round(self.baseline, 6),
            "caused_by_friction": bool(self.rules),
        }


class ChurnModel:
    """Settles each day's appointments: leave (with friction's effect) or come back."""

    def __init__(self, config: SimulationConfig, rules: TruthRules) -> None:
        self._effect = config.friction_churn
        severities = {rule.severity for rule in rules.friction}
        names = [rule.name for rule in rules.friction]
        for key in config.friction_churn_rules:
            if key not in severities and key not in names:
                raise ValueError(
                    f"friction_churn_rules: {key!r} is neither a friction rule nor a severity "
                    f"(rules: {', '.join(names)}; severities: {', '.join(sorted(severities))})"
                )
        self._by_rule = {
            rule.name: config.friction_churn_rules.get(
                rule.name, config.friction_churn_rules.get(rule.severity, self._effect)
            )
            for rule in rules.friction
        }
        self._seed = config.seed

    def multiplier(self, rules: Sequence[str]) -> float:
        """The effect of a visit that crossed ``rules`` (the strongest of them; 1 for none)."""
        return max((self._by_rule.get(rule, self._effect) for rule in rules), default=1.0)

    @staticmethod
    def baseline(world: World, visit: Visit) -> float:
        department = world.panels[(visit.site.site_id, visit.department)].department
        factor = FIRST_VISIT_ATTRITION if visit.visit_type in FIRST_VISIT_TYPES else 1.0
        return department.attrition * factor

    def settle_day(
        self, world: World, day_index: int, visits: Sequence[Visit], records: Sequence[AppointmentTruth]
    ) -> list[Departure]:
        """Send every patient of the day back to their panel, or out of the practice."""
        rng = random.Random(f"churn:{self._seed}:{day_index}")
        departures = []
        for visit, record in zip(visits, records, strict=True):
            panel = world.panels[(visit.site.site_id, visit.department)]
            completed = record.status == "completed"
            if completed:
                rules = tuple(dict.fromkeys(hit.rule for hit in record.friction))
                baseline = self.baseline(world, visit)
                probability = min(1.0, baseline * self.multiplier(rules))
                if rng.random() < probability:
                    departures.append(
                        Departure(visit.patient_id, visit.appointment_id, visit.scheduled_start, rules, probability, baseline)
                    )
                    continue
            panel.come_back(visit.patient, day_index, completed, rng)
        return departures
