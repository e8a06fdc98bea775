"""The expected metrics of every appointment and patient, from the model's own facts.

This is what the pipeline must produce for the simulated input, per
``journey/METRICS.md``, computed from the :class:`~simulator.model.Visit`
facts (not by parsing the emitted events). The input is taken as final: the watermark
is the largest ``occurred_at`` of the valid events (end-of-input replay).

Instants are epoch ms (``*_ms`` fields) in Python; the JSON form
(:meth:`AppointmentTruth.to_json`) also gives them as ISO 8601 UTC strings with
milliseconds (``2026-03-02T14:55:00.000Z``) under the name without ``_ms``.

>>> minutes(0, 90_500)
1.5083333333333333
>>> minutes(None, 90_500) is None
True
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from journey.friction import Rule, load_rules
from runtime.config import Settings
from schemas.timestamps import DAY_MS, HOUR_MS, MINUTE_MS
from schemas.timestamps import minutes_between as minutes
from simulator.clock import iso_utc
from simulator.model import Visit

Status = Literal["scheduled", "cancelled", "late_cancelled", "no_show", "in_progress", "completed", "left_without_being_seen"]


# -- rules ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TruthRules:
    """The pipeline settings the truth depends on (defaults: ``runtime.config.Settings``)."""

    no_show_grace_min: float = Settings.model_fields["no_show_grace_min"].default
    late_cancel_window_h: float = Settings.model_fields["late_cancel_window_h"].default
    journey_close_after_h: float = Settings.model_fields["journey_close_after_h"].default
    friction: tuple[Rule, ...] = field(default_factory=load_rules)


# -- records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrictionHit:
    rule: str
    severity: str
    value: float
    threshold: float | None
    occurred_at_ms: int  # the event closing the measured interval (drop_count: the last drop)


@dataclass(frozen=True, slots=True)
class AppointmentTruth:
    """One appointment's expected journey row (see module doc for the time format)."""

    appointment_id: str
    patient_id: str
    site_id: str
    department: str
    provider_id: str
    modality: str
    visit_type: str
    scheduled_start_ms: int
    duration_min: int
    booked_at_ms: int
    status: Status
    is_final: bool
    lead_time_days: float
    reschedule_count: int
    late_cancelled: bool
    no_show: bool
    arrival_offset_min: float | None
    arrival_to_checkin_min: float | None
    lobby_wait_min: float | None
    room_wait_min: float | None
    checkin_to_provider_min: float | None
    provider_start_delay_min: float | None
    cycle_time_min: float | None
    queue_wait_min: dict[str, float]
    queue_abandoned: dict[str, int]
    wait_estimate_error_min: float | None
    patient_join_offset_min: float | None
    provider_join_offset_min: float | None
    virtual_wait_min: float | None
    telehealth_connected: bool | None
    telehealth_abandoned: bool | None
    drop_count: int
    connection_issue_count: int
    reminders_sent: int
    friction: tuple[FrictionHit, ...]

    def to_json(self) -> dict[str, Any]:
        """The truth file's object: ``record: "appointment"``, instants also as ISO UTC strings."""
        out: dict[str, Any] = {"record": "appointment"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "friction":
                value = [
                    {
                        "rule": hit.rule,
                        "severity": hit.severity,
                        "value": hit.value,
                        "threshold": hit.threshold,
                        "occurred_at": iso_utc(hit.occurred_at_ms),
                        "occurred_at_ms": hit.occurred_at_ms,
                    }
                    for hit in value
                ]
            elif f.name.endswith("_at_ms") or f.name.endswith("_start_ms"):
                out[f.name.removesuffix("_ms")] = iso_utc(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class CompletedVisit:
    appointment_id: str
    scheduled_start_ms: int
    had_friction: bool
    returned_within_90d: bool | None  # None: the watermark has not passed visit + 90 days


@dataclass(frozen=True, slots=True)
class PatientTruth:
    patient_id: str
    appointments: int
    visits_completed: int
    no_shows: int
    late_cancellations: int
    days_since_previous_completed_visit: float | None
    visits: tuple[CompletedVisit, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "record": "patient",
            "patient_id": self.patient_id,
            "appointments": self.appointments,
            "visits_completed": self.visits_completed,
            "no_shows": self.no_shows,
            "late_cancellations": self.late_cancellations,
            "days_since_previous_completed_visit": self.days_since_previous_completed_visit,
            "visits": [
                {
                    "appointment_id": v.appointment_id,
                    "scheduled_start": iso_utc(v.scheduled_start_ms),
                    "scheduled_start_ms": v.scheduled_start_ms,
                    "had_friction": v.had_friction,
                    "returned_within_90d": v.returned_within_90d,
                }
                for v in self.visits
            ],
        }


# -- appointment ------------------------------------------------------------------


def _first(times: Iterable[int]) -> int | None:
    return min(times, default=None)


def _queues(visit: Visit) -> tuple[dict[str, float], dict[str, int], list[tuple[float, int]]]:
    """Greedy pairing per queue (METRICS.md "Queues"): sums, abandon counts, per-wait errors.

    Returns (queue_wait_min, queue_abandoned, [(estimate error, wait end)] of called waits).
    """
    starts: dict[str, list[int]] = defaultdict(list)
    ends: dict[str, list[tuple[int, str]]] = defaultdict(list)
    estimates: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for wait in visit.waits:
        starts[wait.queue].append(wait.started)
        if wait.ended is not None and wait.outcome is not None:
            ends[wait.queue].append((wait.ended, wait.outcome))
        estimates[wait.queue].extend(wait.estimates)
    waited: dict[str, float] = {}
    abandoned: dict[str, int] = {}
    errors: list[tuple[float, int]] = []
    for queue in sorted(starts.keys() | ends.keys()):
        open_starts = sorted(starts[queue])
        published = sorted(estimates[queue])
        for end, outcome in sorted(ends[queue]):
            # Close the earliest still-open start not later than the end.
            match = next((i for i, s in enumerate(open_starts) if s <= end), None)
            if match is None:
                continue  # an end without a start is ignored
            started = open_starts.pop(match)
            waited.setdefault(queue, 0.0)
            abandoned.setdefault(queue, 0)
            length = (end - started) / MINUTE_MS
            if outcome == "abandoned":
                abandoned[queue] += 1
                continue
            waited[queue] += length
            told = [value for at, value in published if at <= end]
            if told:
                errors.append((length - told[-1], end))
    return waited, abandoned, errors


def appointment_truth(visit: Visit, watermark_ms: int, rules: TruthRules | None = None) -> AppointmentTruth:
    """The journey row of ``visit`` once the input ends at ``watermark_ms``."""
    rules = rules or TruthRules()
    start = visit.scheduled_start
    duration = visit.booked_duration
    for change in visit.reschedules:
        if change.duration is not None:
            duration = change.duration
    telehealth = visit.modality == "telehealth"

    cancel = visit.cancel
    late_cancelled = (
        cancel is not None and cancel.by == "patient" and start - cancel.at < rules.late_cancel_window_h * HOUR_MS
    )

    arrived = _first(r.at for r in visit.arrived)
    checked_in = _first(r.at for r in visit.checked_in)
    roomed = _first(r.at for r in visit.roomed)
    started = visit.provider_started
    checked_out = visit.checked_out
    lwbs = visit.left_without_being_seen

    patient_joins = [p.at for p in visit.presence if p.joined and p.role == "patient"]
    provider_joins = [p.at for p in visit.presence if p.joined and p.role == "provider"]
    patient_lefts = [p.at for p in visit.presence if not p.joined and p.role == "patient"]
    drops = [p.at for p in visit.presence if not p.joined and p.reason == "dropped"]
    first_patient, first_provider = _first(patient_joins), _first(provider_joins)
    first_patient_left = _first(patient_lefts)

    waited, abandoned, errors = _queues(visit)
    worst = max(errors, key=lambda e: abs(e[0]), default=None)

    deadline = start + rules.no_show_grace_min * MINUTE_MS
    showed_up = any(t <= deadline for t in patient_joins) if telehealth else any(r.at <= deadline for r in visit.arrived)
    explicit_no_show = visit.no_show_at is not None
    no_show = explicit_no_show or (cancel is None and watermark_ms >= deadline and not showed_up)

    if cancel is not None:
        status: Status = "late_cancelled" if late_cancelled else "cancelled"
    elif explicit_no_show:
        status = "no_show"
    elif (not telehealth and checked_out is not None) or (
        telehealth and visit.session_ended is not None and patient_joins and provider_joins
    ):
        status = "completed"
    elif lwbs is not None or (telehealth and first_patient_left is not None and first_provider is None):
        # A telehealth patient who gave up before any provider joined left without being seen.
        status = "left_without_being_seen"
    elif no_show:
        status = "no_show"
    elif (not telehealth and (visit.arrived or visit.checked_in or visit.roomed or started is not None)) or (
        telehealth and patient_joins
    ):
        status = "in_progress"
    else:
        status = "scheduled"

    record = AppointmentTruth(
        appointment_id=visit.appointment_id,
        patient_id=visit.patient_id,
        site_id=visit.site.site_id,
        department=visit.department,
        provider_id=visit.provider_id,
        modality=visit.modality,
        visit_type=visit.visit_type,
        scheduled_start_ms=start,
        duration_min=duration,
        booked_at_ms=visit.booked_at,
        status=status,
        is_final=watermark_ms >= start + rules.journey_close_after_h * HOUR_MS,
        lead_time_days=(start - visit.booked_at) / DAY_MS,
        reschedule_count=len(visit.reschedules),
        late_cancelled=late_cancelled,
        no_show=no_show,
        arrival_offset_min=minutes(start, arrived),
        arrival_to_checkin_min=minutes(arrived, checked_in),
        lobby_wait_min=minutes(checked_in, roomed),
        room_wait_min=minutes(roomed, started),
        checkin_to_provider_min=minutes(checked_in, started),
        provider_start_delay_min=minutes(start, started),
        cycle_time_min=minutes(arrived, checked_out),
        queue_wait_min=waited,
        queue_abandoned=abandoned,
        wait_estimate_error_min=None if worst is None else worst[0],
        patient_join_offset_min=minutes(start, first_patient) if telehealth else None,
        provider_join_offset_min=minutes(start, first_provider) if telehealth else None,
        virtual_wait_min=(
            minutes(first_patient, first_provider)
            if telehealth and first_patient is not None and first_provider is not None and first_patient < first_provider
            else None
        ),
        telehealth_connected=(first_patient is not None and first_provider is not None) if telehealth else None,
        telehealth_abandoned=(
            first_patient_left is not None and (first_provider is None or first_provider > first_patient_left)
        ) if telehealth else None,
        drop_count=len(drops),
        connection_issue_count=len(visit.issues),
        reminders_sent=sum(1 for r in visit.reminders if r.at < start),
        friction=(),
    )
    closing = {
        "lobby_wait_min": roomed,
        "room_wait_min": started,
        "provider_start_delay_min": started,
        "cycle_time_min": checked_out,
        "arrival_to_checkin_min": checked_in,
        "virtual_wait_min": first_provider,
        "telehealth_abandoned": first_patient_left,
        # A count closes no interval; METRICS.md leaves it open: the drop that made the
        # final count, i.e. the last one.
        "drop_count": max(drops, default=None),
        "no_show": start,
        "late_cancelled": start,
        "left_without_being_seen": lwbs,
    }
    hits = []
    for rule in rules.friction:
        if rule.metric == "wait_estimate_error_min":
            # One record per wait, not one per journey.
            for error, end in errors:
                if _crosses(error, rule):
                    hits.append(FrictionHit(rule.name, rule.severity, error, rule.threshold, end))
            continue
        if rule.metric == "left_without_being_seen":
            # The check-in event; the telehealth case has its own rule (telehealth_abandoned).
            value: Any = lwbs is not None
        else:
            value = getattr(record, rule.metric, None)
        if value is None or not _crosses(value, rule):
            continue
        measured = 1.0 if rule.op == "is_true" else float(value)
        at = closing.get(rule.metric)
        hits.append(FrictionHit(rule.name, rule.severity, measured, rule.threshold, start if at is None else at))
    return dataclasses.replace(record, friction=tuple(hits))


def _crosses(value: float | bool, rule: Rule) -> bool:
    if rule.op == "is_true":
        return bool(value)
    threshold = float(rule.threshold or 0)
    if rule.op == ">":
        return value > threshold
    if rule.op == ">=":
        return value >= threshold
    if rule.op == "<":
        return value < threshold
    return value <= threshold


# -- patients ---------------------------------------------------------------------


class PatientLedger:
    """Per-patient figures, accumulated one appointment truth at a time."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        self._visits: dict[str, list[tuple[int, str, bool]]] = defaultdict(list)

    def add(self, record: AppointmentTruth) -> None:
        counts = self._counts.setdefault(record.patient_id, [0, 0, 0, 0])
        counts[0] += 1
        if record.status == "completed":
            counts[1] += 1
            self._visits[record.patient_id].append(
                (record.scheduled_start_ms, record.appointment_id, bool(record.friction))
            )
        elif record.status == "no_show":
            counts[2] += 1
        elif record.status == "late_cancelled":
            counts[3] += 1

    def patients(self, watermark_ms: int) -> dict[str, PatientTruth]:
        """Every patient's figures once the input ends at ``watermark_ms``."""
        out = {}
        window = 90 * DAY_MS
        for patient_id in sorted(self._counts):
            appointments, completed, no_shows, late = self._counts[patient_id]
            visits = sorted(self._visits.get(patient_id, ()))
            summaries = []
            for index, (at, appointment_id, had_friction) in enumerate(visits):
                returned: bool | None
                if any(at < other <= at + window for other, _, _ in visits[index + 1:]):
                    returned = True
                elif watermark_ms >= at + window:
                    returned = False
                else:
                    returned = None
                summaries.append(CompletedVisit(appointment_id, at, had_friction, returned))
            out[patient_id] = PatientTruth(
                patient_id=patient_id,
                appointments=appointments,
                visits_completed=completed,
                no_shows=no_shows,
                late_cancellations=late,
                days_since_previous_completed_visit=(visits[-1][0] - visits[-2][0]) / DAY_MS if len(visits) >= 2 else None,
                visits=tuple(summaries),
            )
        return out
