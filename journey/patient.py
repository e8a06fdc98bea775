"""The per-patient journey: a patient's appointments, and whether friction costs visits.

Keyed by the pseudonymous ``patient_key``. Fed with the latest version of each of the
patient's appointments (the journey state machine's ``patient_update``); a lower or
equal version of an appointment already known is ignored, so redelivery and
reordering do not matter.

The version is ``4096 * (sum of the appointment versions) + decided`` where
``decided`` counts visits whose 90-day return question the watermark alone has
settled: both only grow, so later states carry larger versions.

>>> from journey.patient import PatientState
>>> state = PatientState()
>>> day = 86_400_000
>>> for appointment, start in (("a1", 0), ("a2", 30 * day)):
...     _ = state.update({"appointment_id": appointment, "version": 40, "patient_key": "pk",
...         "status": "completed", "scheduled_start": start, "friction_rules": ["lobby_wait"],
...         "site_id": "s1", "department": "cardiology", "provider_id": "dr1", "visit_type": "follow_up"})
>>> emission, _ = state.evaluate("pk", watermark_ms=200 * day)
>>> summary = emission.bundle["patient_journeys"][0]
>>> summary["visits_completed"], summary["days_since_previous_completed_visit"]
(2, 30.0)
>>> [v["returned_within_90d"] for v in emission.bundle["patient_visits"]]
[1, 0]
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

import orjson

from journey.state import Bundle
from schemas.tables import tombstone
from schemas.timestamps import DAY_MS

RETURN_WINDOW_MS = 90 * DAY_MS
# A return (retention, ``journey/METRICS.md``) starts at least this long after the visit:
# a later day, not a second visit of the same day.
RETURN_GAP_MS = 12 * 3_600_000
_DECIDED_LIMIT = 4095

# Positions in a stored appointment record. Records stored before the visit type was kept
# have seven fields; their visit type reads as unknown ("") until the appointment changes.
VERSION, STATUS, START, RULES, SITE, DEPARTMENT, PROVIDER, VISIT_TYPE = range(8)


@dataclass(slots=True)
class PatientEmission:
    version: int
    bundle: Bundle


class PatientState:
    __slots__ = ("appointments", "version", "emitted", "partition")

    def __init__(self, appointments: dict[str, list[Any]] | None = None, version: int = 0,
                 emitted: list[str] | None = None, partition: int = 0):
        self.appointments: dict[str, list[Any]] = appointments or {}
        self.version = version
        self.emitted: list[str] = emitted or []
        self.partition = partition

    def to_bytes(self) -> bytes:
        return orjson.dumps({"a": self.appointments, "v": self.version, "e": self.emitted, "p": self.partition})

    @classmethod
    def from_bytes(cls, raw: bytes) -> PatientState:
        data = orjson.loads(raw)
        return cls(data["a"], data["v"], data["e"], data["p"])

    def update(self, update: dict[str, Any]) -> bool:
        """Take an appointment's new version; ``False`` if it is not newer than the known one."""
        known = self.appointments.get(update["appointment_id"])
        if known is not None and known[VERSION] >= update["version"]:
            return False
        # ``visit_type`` is absent from updates a worker of before it was kept still had in flight.
        self.appointments[update["appointment_id"]] = [
            update["version"], update["status"], update["scheduled_start"], update["friction_rules"],
            update["site_id"], update["department"], update["provider_id"], update.get("visit_type") or "",
        ]
        return True

    def evaluate(self, patient_key: str, watermark_ms: int) -> tuple[PatientEmission | None, tuple[int, ...]]:
        """The next version's rows (``None`` when unchanged) and when to look again."""
        visits = sorted(
            (record[START], appointment_id, record)
            for appointment_id, record in self.appointments.items()
            if record[STATUS] == "completed" and record[START] is not None
        )
        starts = [start for start, _, _ in visits]
        visit_rows: list[dict[str, Any]] = []
        decided_by_watermark = 0
        tallies = {"friction": [0, 0, 0], "clean": [0, 0, 0]}  # visits, returned, decided
        for index, (start, appointment_id, record) in enumerate(visits):
            # Visits at the same instant are not returns; look for the first strictly later one.
            after = bisect_right(starts, start)
            later = starts[after] if after < len(starts) else None
            back = bisect_left(starts, start + RETURN_GAP_MS, lo=after)
            returned_at = starts[back] if back < len(starts) else None
            if later is not None and later - start <= RETURN_WINDOW_MS:
                returned: int | None = 1
            elif watermark_ms >= start + RETURN_WINDOW_MS:
                returned = 0
                decided_by_watermark += 1
            else:
                returned = None
            tally = tallies["friction" if record[RULES] else "clean"]
            tally[0] += 1
            tally[1] += returned == 1
            tally[2] += returned is not None
            visit_rows.append({
                "patient_key": patient_key,
                "appointment_id": appointment_id,
                "is_deleted": 0,
                "site_id": record[SITE],
                "department": record[DEPARTMENT],
                "provider_id": record[PROVIDER],
                "visit_type": record[VISIT_TYPE] if len(record) > VISIT_TYPE else "",
                "visit_at": start,
                "had_friction": int(bool(record[RULES])),
                "friction_rules": record[RULES],
                "returned_within_90d": returned,
                "days_to_next_visit": (later - start) / DAY_MS if later is not None else None,
                "days_to_return": (returned_at - start) / DAY_MS if returned_at is not None else None,
            })
        version = 4096 * sum(r[VERSION] for r in self.appointments.values()) + min(decided_by_watermark, _DECIDED_LIMIT)
        deadlines = tuple(row["visit_at"] + RETURN_WINDOW_MS for row in visit_rows if row["returned_within_90d"] is None)
        if version <= self.version:
            return None, deadlines
        for row in visit_rows:
            row["version"] = version
        statuses = [record[STATUS] for record in self.appointments.values()]
        summary = {
            "patient_key": patient_key,
            "version": version,
            "appointments": len(self.appointments),
            "visits_completed": len(visits),
            "no_shows": statuses.count("no_show"),
            "late_cancellations": statuses.count("late_cancelled"),
            "first_seen_at": min((r[START] for r in self.appointments.values() if r[START] is not None), default=None),
            "last_completed_visit_at": starts[-1] if starts else None,
            "days_since_previous_completed_visit": (starts[-1] - starts[-2]) / DAY_MS if len(starts) >= 2 else None,
            "friction_visits": tallies["friction"][0],
            "friction_visits_returned_90d": tallies["friction"][1],
            "friction_visits_decided_90d": tallies["friction"][2],
            "clean_visits": tallies["clean"][0],
            "clean_visits_returned_90d": tallies["clean"][1],
            "clean_visits_decided_90d": tallies["clean"][2],
        }
        keys = sorted(row["appointment_id"] for row in visit_rows)
        tombstones = [tombstone("patient_visits", version, patient_key=patient_key, appointment_id=gone)
                      for gone in sorted(set(self.emitted) - set(keys))]
        self.version, self.emitted = version, keys
        bundle = {"patient_journeys": [summary], "patient_visits": visit_rows + tombstones}
        return PatientEmission(version, bundle), deadlines
