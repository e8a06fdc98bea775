"""A realistic synthetic week of pipeline output rows, for the dashboard tests.

Stand-in until the simulator -> offline pipeline -> RowWriter path is wired into the
dashboard tests (``load_week`` in ``test_dashboards_clickhouse.py`` is the ONE place to
switch). The rows follow the ClickHouse tables of ``sinks/migrations`` and the metric
definitions of ``streams/journey/METRICS.md``: three sites with different crowding,
four departments, in-person and telehealth visits, no-shows that grow with lead time
and shrink with reminders, clinics that fall behind in the afternoon, visits still in
progress at the watermark ("now" = mid-afternoon of the last day), friction records
from the default rules, and patients who come back less often after friction.

Bundles are ``{table: [row, ...]}`` dicts with DateTime64 values as epoch milliseconds,
the RowWriter's input format.

    >>> bundles = synthetic_bundles(days=1, seed=3)
    >>> sorted(bundles) == sorted(TABLES)
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MINUTE = 60_000
DAY = 86_400_000

TABLES = (
    "appointment_journeys",
    "stage_intervals",
    "queue_waits",
    "friction_events",
    "patient_visits",
    "patient_journeys",
    "events",
)

# site -> (extra lobby minutes, provider lateness, no-show bias)
SITES: dict[str, tuple[float, float, float]] = {
    "north": (0.0, 0.0, 0.0),
    "riverside": (4.0, 2.0, 0.02),
    "downtown": (9.0, 5.0, 0.05),
}
# department -> (telehealth share, booked minutes)
DEPARTMENTS: dict[str, tuple[float, int]] = {
    "primary_care": (0.25, 20),
    "cardiology": (0.15, 30),
    "dermatology": (0.35, 20),
    "pediatrics": (0.10, 30),
}
PROVIDERS_PER_DEPARTMENT = 2

# Default friction rules (streams/journey/friction_rules.yaml): name -> (threshold, severity).
RULES: dict[str, tuple[float, str]] = {
    "lobby_wait": (20, "medium"),
    "room_wait": (15, "medium"),
    "provider_start_delay": (15, "medium"),
    "cycle_time": (90, "medium"),
    "arrival_to_checkin": (10, "low"),
    "virtual_wait": (10, "medium"),
    "telehealth_abandoned": (1, "high"),
    "drop_count": (2, "medium"),
    "wait_estimate_error": (15, "low"),
    "no_show": (1, "high"),
    "late_cancellation": (1, "medium"),
    "left_without_being_seen": (1, "high"),
}


def patient_key(number: int) -> str:
    """A stand-in pseudonym (the pipeline uses a keyed HMAC-SHA256)."""
    return hashlib.sha256(f"synthetic-patient-{number}".encode()).hexdigest()


@dataclass
class _Visit:
    appointment_id: str
    patient: str
    site: str
    department: str
    provider: str
    modality: str
    start: int
    duration: int
    booked_at: int
    reminders: int
    reschedules: int
    status: str = "scheduled"
    times: dict[str, int | None] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"drop_count": 0, "connection_issue_count": 0})
    late_cancelled: int | None = 0
    cancelled_by: str | None = None
    cancelled_at: int | None = None
    waits: list[dict[str, Any]] = field(default_factory=list)
    issues: list[tuple[int, str, str]] = field(default_factory=list)
    frictions: list[dict[str, Any]] = field(default_factory=list)


def _minutes(later: int | None, earlier: int | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier) / MINUTE


class _Week:
    def __init__(self, days: int, seed: int, start: datetime) -> None:
        self.rng = random.Random(seed)
        self.days = days
        self.day0 = int(start.timestamp() * 1000)
        # "now": 15:10 on the last day, so some patients are mid-visit.
        self.watermark = self.day0 + (days - 1) * DAY + (15 * 60 + 10) * MINUTE
        self.serial = 0
        self.new_patients = 0
        self.returning: dict[int, list[str]] = defaultdict(list)  # day index -> patients rebooking then
        self.ready: list[str] = []  # patients who may book again from today on
        self.visits: list[_Visit] = []

    # -- booking ---------------------------------------------------------------------

    def patient_for(self) -> str:
        if self.ready and self.rng.random() < 0.45:
            index = self.rng.randrange(len(self.ready))
            self.ready[index], self.ready[-1] = self.ready[-1], self.ready[index]
            return self.ready.pop()
        self.new_patients += 1
        return patient_key(self.new_patients)

    def no_show_prone(self, patient: str) -> float:
        # One patient in ten misses appointments four times as often as the others.
        return 4.0 if int(patient[:2], 16) < 26 else 1.0

    def lead_time_days(self) -> float:
        if self.rng.random() < 0.15:
            return self.rng.uniform(0.05, 0.9)
        return min(self.rng.lognormvariate(math.log(9), 0.9), 120.0)

    def run(self) -> None:
        for day in range(self.days):
            weekday = (datetime.fromtimestamp(self.day0 / 1000, UTC) + timedelta(days=day)).weekday()
            if weekday == 6:
                continue  # closed on Sundays
            fill = 0.45 if weekday == 5 else 0.82
            last_slot = 12 * 60 if weekday == 5 else 16 * 60 + 40
            booked_before = len(self.visits)
            self.ready.extend(self.returning.pop(day, []))
            for site in SITES:
                for department, (tele_share, booked) in DEPARTMENTS.items():
                    for number in range(1, PROVIDERS_PER_DEPARTMENT + 1):
                        provider = f"{site[:3]}-{department[:4]}-{number}"
                        slot = 8 * 60
                        while slot <= last_slot:
                            if self.rng.random() < fill:
                                self.book(day, site, department, provider, tele_share, booked, slot)
                            slot += booked
            for visit in sorted(self.visits[booked_before:], key=lambda v: v.start):
                self.outcome(visit)
                self.friction(visit)
                if visit.status == "completed":
                    # Friction costs patients: fewer come back after a visit with friction.
                    if self.rng.random() < (0.3 if visit.frictions else 0.55):
                        self.returning[day + self.rng.randint(1, 40)].append(visit.patient)
                elif visit.status == "no_show" and self.rng.random() < 0.6:
                    self.returning[day + self.rng.randint(1, 4)].append(visit.patient)  # the clinic rebooks
        self.visits.sort(key=lambda v: v.start)

    def book(self, day: int, site: str, department: str, provider: str, tele: float, booked: int, slot: int) -> None:
        self.serial += 1
        lead = self.lead_time_days()
        start = self.day0 + day * DAY + slot * MINUTE
        reminders = 0 if lead < 1 else self.rng.choices([0, 1, 2, 3], [0.15, 0.35, 0.35, 0.15])[0]
        self.visits.append(
            _Visit(
                appointment_id=f"apt-{self.serial:06d}",
                patient=self.patient_for(),
                site=site,
                department=department,
                provider=provider,
                modality="telehealth" if self.rng.random() < tele else "in_person",
                start=start,
                duration=booked,
                booked_at=start - int(lead * DAY),
                reminders=reminders,
                reschedules=self.rng.choices([0, 1, 2], [0.88, 0.1, 0.02])[0],
            )
        )

    # -- what happens ----------------------------------------------------------------

    def outcome(self, v: _Visit) -> None:
        rng = self.rng
        lead = (v.start - v.booked_at) / DAY
        _, lateness, no_show_bias = SITES[v.site]
        if rng.random() < 0.04:
            v.cancelled_by = rng.choice(["patient", "clinic"])
            v.cancelled_at = v.start - int(rng.uniform(26, 24 * 10) * 60 * MINUTE)
        elif rng.random() < 0.02 + (0.03 if lead > 30 else 0.0):
            v.cancelled_by = "patient"
            v.cancelled_at = v.start - int(rng.uniform(1, 23) * 60 * MINUTE)
        if v.cancelled_at is not None and v.cancelled_at <= self.watermark:
            v.late_cancelled = int(v.cancelled_by == "patient" and v.start - v.cancelled_at < 24 * 60 * MINUTE)
            v.status = "late_cancelled" if v.late_cancelled else "cancelled"
            return
        v.cancelled_by = v.cancelled_at = None
        p_no_show = (0.02 + 0.002 * min(lead, 60) - 0.008 * v.reminders + no_show_bias) * self.no_show_prone(v.patient)
        if rng.random() < max(p_no_show, 0.01):
            v.status = "no_show" if v.start + 30 * MINUTE <= self.watermark else "scheduled"
            return
        hour = (v.start - self.day0) % DAY / (60 * MINUTE)
        behind = max(hour - 8, 0) * 0.5  # clinics fall behind through the day
        if v.modality == "telehealth":
            self.telehealth(v, lateness + behind / 2)
        else:
            self.in_person(v, lateness + behind)

    def _at(self, moment: float) -> int | None:
        return int(moment) if moment <= self.watermark else None

    def in_person(self, v: _Visit, behind: float) -> None:
        rng = self.rng
        extra_lobby, _, _ = SITES[v.site]
        arrived = v.start + rng.gauss(-10, 6) * MINUTE
        checked_in = arrived + rng.expovariate(1 / 2.5) * MINUTE
        lobby = rng.gammavariate(2, (5 + extra_lobby + behind * 0.5) / 2)
        roomed = checked_in + lobby * MINUTE
        times: dict[str, int | None] = {"arrived_at": self._at(arrived), "checked_in_at": self._at(checked_in)}
        if rng.random() < 0.012 and lobby > 25:  # left without being seen
            times["left_without_being_seen_at"] = self._at(checked_in + rng.uniform(25, 60) * MINUTE)
        else:
            provider = max(roomed + rng.gammavariate(2, 2.5) * MINUTE, v.start + (behind + rng.gauss(0, 4)) * MINUTE)
            seen = rng.uniform(0.6, 1.1) * v.duration
            lab = rng.uniform(5, 35) if rng.random() < 0.2 else 0.0
            out = provider + (seen + lab + rng.uniform(2, 8)) * MINUTE
            times |= {"roomed_at": self._at(roomed), "provider_started_at": self._at(provider),
                      "checked_out_at": self._at(out)}
            if lab:
                lab_start = provider + seen * MINUTE
                estimate = float(rng.choice([10, 15, 20]))
                lab_end = self._at(lab_start + lab * MINUTE)
                v.waits.append(self._wait(v, "lab", int(lab_start), lab_end, estimate))
        lobby_wait = self._wait(v, "lobby", times["checked_in_at"], times.get("roomed_at"),
                                float(round(6 + SITES[v.site][0])))
        if times.get("left_without_being_seen_at"):  # gave up waiting in the lobby
            lobby_wait |= {"ended_at": times["left_without_being_seen_at"], "outcome": "abandoned",
                           "wait_min": None, "estimate_error_min": None}
        v.waits.insert(0, lobby_wait)
        v.times = times
        t = times
        v.metrics = {
            "arrival_offset_min": _minutes(t["arrived_at"], v.start),
            "arrival_to_checkin_min": _minutes(t["checked_in_at"], t["arrived_at"]),
            "lobby_wait_min": _minutes(t.get("roomed_at"), t["checked_in_at"]),
            "room_wait_min": _minutes(t.get("provider_started_at"), t.get("roomed_at")),
            "checkin_to_provider_min": _minutes(t.get("provider_started_at"), t["checked_in_at"]),
            "provider_start_delay_min": _minutes(t.get("provider_started_at"), v.start),
            "cycle_time_min": _minutes(t.get("checked_out_at"), t["arrived_at"]),
        }
        if t.get("left_without_being_seen_at"):
            v.status = "left_without_being_seen"
        elif t.get("checked_out_at"):
            v.status = "completed"
        elif t["arrived_at"] is not None:
            v.status = "in_progress"
        else:
            v.status = "scheduled"

    def _wait(self, v: _Visit, queue: str, start: int | None, end: int | None, estimate: float) -> dict[str, Any]:
        minutes = _minutes(end, start)
        return {"queue": queue, "started_at": start, "ended_at": end, "wait_min": minutes,
                "outcome": "called" if end is not None else None, "estimated_wait_min": estimate,
                "estimate_error_min": None if minutes is None else minutes - estimate}

    def telehealth(self, v: _Visit, behind: float) -> None:
        rng = self.rng
        patient = v.start + rng.gauss(-3, 3.5) * MINUTE
        provider: float | None = v.start + (rng.gauss(2, 4) + behind) * MINUTE
        left: float | None = None
        assert provider is not None
        if rng.random() < 0.015 or (provider - patient > 15 * MINUTE and rng.random() < 0.3):
            left = patient + rng.uniform(8, 15) * MINUTE
            if left < provider or rng.random() < 0.4:
                provider = None  # the patient gave up before the provider came
        t = {"patient_joined_at": self._at(patient), "provider_joined_at": self._at(provider) if provider else None}
        v.times = t
        abandoned = int(left is not None and provider is None and left <= self.watermark)
        v.counts["drop_count"] = sum(rng.random() < 0.05 for _ in range(3)) if t["provider_joined_at"] else 0
        for _ in range(sum(rng.random() < 0.15 for _ in range(3))):
            moment = patient + rng.uniform(0, v.duration) * MINUTE
            if moment <= self.watermark:
                v.issues.append((int(moment), rng.choice(["audio", "video", "network"]),
                                 rng.choice(["patient", "patient", "provider"])))
        v.counts["connection_issue_count"] = len(v.issues)
        first_patient = t["patient_joined_at"]
        first_provider = t["provider_joined_at"]
        v.metrics = {
            "patient_join_offset_min": _minutes(first_patient, v.start),
            "provider_join_offset_min": _minutes(first_provider, v.start),
            "virtual_wait_min": _minutes(first_provider, first_patient)
            if first_patient is not None and first_provider is not None and first_patient < first_provider
            else None,
        }
        v.metrics["telehealth_connected"] = int(first_patient is not None and first_provider is not None)
        v.metrics["telehealth_abandoned"] = abandoned
        ended = (first_provider or 0) + v.duration * MINUTE
        if first_patient is None:
            v.status = "scheduled"
        elif first_provider is not None and ended <= self.watermark:
            v.status = "completed"
        else:
            v.status = "in_progress"
        if left is not None and t["patient_joined_at"] is not None:
            v.times["patient_left_at"] = self._at(left)

    def friction(self, v: _Visit) -> None:
        t, m = v.times, v.metrics
        checks: list[tuple[str, float | None, int | None]] = [
            ("lobby_wait", m.get("lobby_wait_min"), t.get("roomed_at")),
            ("room_wait", m.get("room_wait_min"), t.get("provider_started_at")),
            ("provider_start_delay", m.get("provider_start_delay_min"), t.get("provider_started_at")),
            ("cycle_time", m.get("cycle_time_min"), t.get("checked_out_at")),
            ("arrival_to_checkin", m.get("arrival_to_checkin_min"), t.get("checked_in_at")),
            ("virtual_wait", m.get("virtual_wait_min"), t.get("provider_joined_at")),
        ]
        for rule, value, moment in checks:
            if value is not None and moment is not None and value > RULES[rule][0]:
                self._hit(v, rule, value, moment)
        if m.get("telehealth_abandoned"):
            self._hit(v, "telehealth_abandoned", 1.0, t.get("patient_left_at") or v.start)
        if v.counts["drop_count"] >= 2:
            self._hit(v, "drop_count", float(v.counts["drop_count"]), t.get("provider_joined_at") or v.start)
        for index, wait in enumerate(v.waits):
            if wait["estimate_error_min"] is not None and wait["estimate_error_min"] > 15:
                self._hit(v, "wait_estimate_error", wait["estimate_error_min"], wait["ended_at"], f"w{index}")
        if v.status == "no_show":
            self._hit(v, "no_show", 1.0, v.start)
        if v.late_cancelled:
            self._hit(v, "late_cancellation", 1.0, v.start)
        if t.get("left_without_being_seen_at"):
            self._hit(v, "left_without_being_seen", 1.0, t["left_without_being_seen_at"])

    def _hit(self, v: _Visit, rule: str, value: float, moment: int, hit_key: str = "") -> None:
        threshold, severity = RULES[rule]
        v.frictions.append({"rule": rule, "hit_key": hit_key, "severity": severity, "occurred_at": moment,
                            "value": value, "threshold": float(threshold)})


# -- rows -------------------------------------------------------------------------------


def _journey_row(w: _Week, v: _Visit) -> dict[str, Any]:
    t, m = v.times, v.metrics
    tele = v.modality == "telehealth"
    moments = [x for x in (v.booked_at, *t.values(), v.cancelled_at) if x is not None]
    return {
        "appointment_id": v.appointment_id, "version": 1, "patient_key": v.patient, "site_id": v.site,
        "department": v.department, "provider_id": v.provider, "modality": v.modality,
        "visit_type": "follow_up" if v.reschedules else "office_visit", "scheduled_start": v.start,
        "duration_min": v.duration, "booked_at": v.booked_at, "status": v.status,
        "lead_time_days": (v.start - v.booked_at) / DAY, "reschedule_count": v.reschedules,
        "late_cancelled": v.late_cancelled, "cancelled_by": v.cancelled_by, "cancelled_at": v.cancelled_at,
        "no_show": int(v.status == "no_show"),
        "arrived_at": t.get("arrived_at"), "checked_in_at": t.get("checked_in_at"),
        "checkin_channel": "kiosk" if t.get("checked_in_at") else None, "roomed_at": t.get("roomed_at"),
        "provider_started_at": t.get("provider_started_at"), "checked_out_at": t.get("checked_out_at"),
        "left_without_being_seen_at": t.get("left_without_being_seen_at"),
        **{k: m.get(k) for k in ("arrival_offset_min", "arrival_to_checkin_min", "lobby_wait_min", "room_wait_min",
                                 "checkin_to_provider_min", "provider_start_delay_min", "cycle_time_min")},
        "queue_wait_min": {w_["queue"]: w_["wait_min"] for w_ in v.waits if w_["wait_min"] is not None},
        "queue_abandoned": {},
        "wait_estimate_error_min": max((w_["estimate_error_min"] for w_ in v.waits
                                        if w_["estimate_error_min"] is not None), key=abs, default=None),
        "patient_joined_at": t.get("patient_joined_at"), "provider_joined_at": t.get("provider_joined_at"),
        "patient_join_offset_min": m.get("patient_join_offset_min"),
        "provider_join_offset_min": m.get("provider_join_offset_min"),
        "virtual_wait_min": m.get("virtual_wait_min"),
        "telehealth_connected": m.get("telehealth_connected") if tele else None,
        "telehealth_abandoned": m.get("telehealth_abandoned") if tele else None,
        "drop_count": v.counts["drop_count"], "connection_issue_count": v.counts["connection_issue_count"],
        "reminders_sent": v.reminders, "friction_count": len(v.frictions),
        "friction_rules": sorted({f["rule"] for f in v.frictions}), "event_count": len(moments),
        "first_event_at": min(moments), "last_event_at": max(moments),
        "is_final": int(w.watermark >= v.start + DAY),
    }


def _stage_rows(v: _Visit) -> list[dict[str, Any]]:
    t = v.times
    pairs = {
        "arrival_to_checkin": ("arrived_at", "checked_in_at"),
        "lobby": ("checked_in_at", "roomed_at"),
        "room": ("roomed_at", "provider_started_at"),
        "checkin_to_provider": ("checked_in_at", "provider_started_at"),
        "cycle": ("arrived_at", "checked_out_at"),
        "virtual_wait": ("patient_joined_at", "provider_joined_at"),
    }
    rows = []
    for stage, (begin, end) in pairs.items():
        started, ended = t.get(begin), t.get(end)
        if started is None or (stage == "virtual_wait" and ended is not None and ended < started):
            continue
        if ended is None and (t.get("left_without_being_seen_at") or t.get("patient_left_at")):
            ended = t.get("left_without_being_seen_at") or t.get("patient_left_at")
        rows.append({"appointment_id": v.appointment_id, "stage": stage, "version": 1, "is_deleted": 0,
                     "site_id": v.site, "department": v.department, "provider_id": v.provider,
                     "modality": v.modality, "started_at": started, "ended_at": ended,
                     "minutes": _minutes(t.get(end), started)})
    return rows


def synthetic_bundles(days: int = 7, seed: int = 20260302, start: datetime | None = None) -> dict[str, list[dict]]:
    """All tables' rows for ``days`` days from ``start`` (Tuesday 2026-03-03 by default, so
    the last day, with "now" at 15:10, is a Monday)."""
    week = _Week(days, seed, start or datetime(2026, 3, 3, tzinfo=UTC))
    week.run()
    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    for v in week.visits:
        rows["appointment_journeys"].append(_journey_row(week, v))
        rows["stage_intervals"].extend(_stage_rows(v))
        base = {"appointment_id": v.appointment_id, "version": 1, "is_deleted": 0, "site_id": v.site,
                "department": v.department, "provider_id": v.provider}
        for index, wait in enumerate(v.waits):
            if wait["started_at"] is not None:
                rows["queue_waits"].append({**base, **wait, "wait_key": f"sim/{v.appointment_id}-w{index}"})
        for hit in v.frictions:
            rows["friction_events"].append({**base, **hit, "modality": v.modality, "scheduled_start": v.start})
        for moment, kind, role in v.issues:
            rows["events"].append({
                "source": "simulator", "event_id": f"{v.appointment_id}-issue-{moment}",
                "event_type": "connection.issue",
                "family": "telehealth", "occurred_at": moment, "appointment_id": v.appointment_id,
                "patient_key": v.patient, "site_id": v.site, "department": v.department, "provider_id": v.provider,
                "fields": json.dumps({"role": role, "kind": kind, "severity": 2}), "topic": "journey.telehealth",
                "partition": 0, "offset": len(rows["events"]), "ingested_at": moment + 1000,
            })
    _patients(week, rows)
    return rows


def _patients(week: _Week, rows: dict[str, list[dict]]) -> None:
    by_patient: dict[str, list[_Visit]] = defaultdict(list)
    for v in week.visits:
        by_patient[v.patient].append(v)
    for patient, visits in by_patient.items():
        completed = sorted((v for v in visits if v.status == "completed"), key=lambda v: v.start)
        summary = {"friction": [0, 0, 0], "clean": [0, 0, 0]}  # visits, returned, decided
        for index, v in enumerate(completed):
            following = completed[index + 1] if index + 1 < len(completed) else None
            returned: int | None = None
            if following is not None and following.start - v.start <= 90 * DAY:
                returned = 1
            elif week.watermark >= v.start + 90 * DAY:
                returned = 0
            kind = "friction" if v.frictions else "clean"
            summary[kind][0] += 1
            summary[kind][1] += returned == 1
            summary[kind][2] += returned is not None
            rows["patient_visits"].append({
                "patient_key": patient, "appointment_id": v.appointment_id, "version": 1, "is_deleted": 0,
                "site_id": v.site, "department": v.department, "provider_id": v.provider, "visit_at": v.start,
                "had_friction": int(bool(v.frictions)), "friction_rules": sorted({f["rule"] for f in v.frictions}),
                "returned_within_90d": returned,
                "days_to_next_visit": (following.start - v.start) / DAY if following else None,
            })
        rows["patient_journeys"].append({
            "patient_key": patient, "version": 1, "appointments": len(visits),
            "visits_completed": len(completed), "no_shows": sum(v.status == "no_show" for v in visits),
            "late_cancellations": sum(v.status == "late_cancelled" for v in visits),
            "first_seen_at": min(v.booked_at for v in visits),
            "last_completed_visit_at": completed[-1].start if completed else None,
            "days_since_previous_completed_visit": (completed[-1].start - completed[-2].start) / DAY
            if len(completed) > 1 else None,
            "friction_visits": summary["friction"][0], "friction_visits_returned_90d": summary["friction"][1],
            "friction_visits_decided_90d": summary["friction"][2], "clean_visits": summary["clean"][0],
            "clean_visits_returned_90d": summary["clean"][1], "clean_visits_decided_90d": summary["clean"][2],
        })


def test_synthetic_week_looks_like_a_clinic_week() -> None:
    rows = synthetic_bundles(days=7)
    journeys = rows["appointment_journeys"]
    statuses = {s: sum(j["status"] == s for j in journeys) for s in {j["status"] for j in journeys}}
    assert 2000 < len(journeys) < 4000
    assert statuses["completed"] > 0.7 * len(journeys)
    assert 0.03 < statuses["no_show"] / len(journeys) < 0.2
    assert statuses["in_progress"] > 0  # "now" is mid-afternoon of the last day
    assert {f["rule"] for f in rows["friction_events"]} >= {"lobby_wait", "no_show", "virtual_wait", "cycle_time"}
    assert any(v["returned_within_90d"] == 1 for v in rows["patient_visits"])
