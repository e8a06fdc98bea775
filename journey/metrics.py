"""Every per-appointment metric of SPEC section 3, as a pure function of the facts.

The journey is recomputed from its whole (deduplicated) fact set each time it changes,
so the result cannot depend on the order the events arrived in: only the set of facts
and the watermark matter. METRICS.md beside this file pins down each definition.

>>> from journey.metrics import JourneyPolicy, compute_journey
>>> booked = [0, "appointment.booked", "cadence", "b1", "s1", "cardiology", "dr1", "pk",
...     {"scheduled_start": 86_400_000, "duration_min": 20, "visit_type": "follow_up", "modality": "in_person"}]
>>> arrived = [86_100_000, "patient.arrived", "kiosk", "a1", "s1", "cardiology", "dr1", "pk", {}]
>>> view = compute_journey("appt-1", [booked, arrived], watermark_ms=0, policy=JourneyPolicy())
>>> view.row["status"], view.row["lead_time_days"], view.row["arrival_offset_min"]
('in_progress', 1.0, -5.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from journey.facts import DEPARTMENT, EVENT_ID, FIELDS, MS, PATIENT, PROVIDER, SITE, SOURCE, TYPE, Fact
from schemas.events import WITHDRAWN
from schemas.timestamps import DAY_MS, HOUR_MS, MINUTE_MS, minutes_between

IN_PERSON_STAGES: tuple[tuple[str, str, str], ...] = (
    # stage name, start event, end event
    ("arrival_to_checkin", "patient.arrived", "patient.checked_in"),
    ("lobby", "patient.checked_in", "patient.roomed"),
    ("room", "patient.roomed", "provider.started"),
    ("checkin_to_provider", "patient.checked_in", "provider.started"),
    ("cycle", "patient.arrived", "patient.checked_out"),
)
TELEHEALTH_FAMILY_TYPES = frozenset(
    {"session.created", "participant.joined", "participant.left", "connection.issue", "session.ended"}
)
IN_PERSON_PROGRESS = ("patient.arrived", "patient.checked_in", "patient.roomed", "provider.started")


@dataclass(frozen=True, slots=True)
class JourneyPolicy:
    """The event-time rules of SPEC section 3 (defaults from the SPEC)."""

    no_show_grace_min: float = 30.0
    late_cancel_window_h: float = 24.0
    close_after_h: float = 24.0

    @property
    def no_show_grace_ms(self) -> int:
        return round(self.no_show_grace_min * MINUTE_MS)

    @property
    def late_cancel_window_ms(self) -> int:
        return round(self.late_cancel_window_h * HOUR_MS)

    @property
    def close_after_ms(self) -> int:
        return round(self.close_after_h * HOUR_MS)


@dataclass(slots=True)
class JourneyView:
    """A journey as computed at one watermark: the table rows and what friction needs."""

    row: dict[str, Any]
    intervals: list[dict[str, Any]] = field(default_factory=list)
    queue_waits: list[dict[str, Any]] = field(default_factory=list)
    touchpoints: dict[str, int | None] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    stage: int = 0
    deadlines: tuple[int, ...] = ()
    # What `stage` and `deadlines` depend on besides the watermark: see `watermark_stage`.
    clock: StageClock = (None, None, False)


# (scheduled_start, when the patient showed up, whether the appointment was cancelled).
StageClock = tuple[int | None, int | None, bool]


def watermark_stage(clock: StageClock, watermark_ms: int, policy: JourneyPolicy) -> int:
    """The part of a journey the watermark alone decides: a no-show inferred at the
    deadline (1) plus the journey closed (2). Kept apart so that a timer can tell,
    without recomputing the journey, whether its facts give anything new.

    >>> policy = JourneyPolicy()
    >>> [watermark_stage((0, None, False), ms, policy) for ms in (0, 30 * MINUTE_MS, 24 * 60 * MINUTE_MS)]
    [0, 1, 3]
    >>> watermark_stage((0, 5 * MINUTE_MS, False), 30 * MINUTE_MS, policy), watermark_stage((None, None, False), 0, policy)
    (0, 0)
    """
    scheduled, showed_up, cancelled = clock
    if scheduled is None:
        return 0
    deadline = scheduled + policy.no_show_grace_ms
    inferred_no_show = not cancelled and watermark_ms >= deadline and (showed_up is None or showed_up > deadline)
    return int(inferred_no_show) + 2 * int(watermark_ms >= scheduled + policy.close_after_ms)


def stage_deadlines(clock: StageClock, policy: JourneyPolicy) -> tuple[int, ...]:
    """The watermarks at which `watermark_stage` may change: the no-show deadline, the close."""
    scheduled = clock[0]
    if scheduled is None:
        return ()
    return (scheduled + policy.no_show_grace_ms, scheduled + policy.close_after_ms)


# Event-time order with a deterministic tie-break, built in C: the sort runs on every evaluation.
_event_order = itemgetter(MS, SOURCE, EVENT_ID)
_WAIT_TYPES = frozenset({"wait.started", "wait.ended"})
_SCHEDULING_TYPES = frozenset({"appointment.booked", "appointment.rescheduled"})


def _pair_queue_waits(facts: list[Fact]) -> list[tuple[Fact, Fact | None]]:
    """Greedy pairing per queue: each end closes the earliest open start not later than it.

    ``facts`` are in event-time order; only ``wait.started`` and ``wait.ended`` matter."""
    open_by_queue: dict[str, list[Fact]] = {}
    pairs: list[tuple[Fact, Fact | None]] = []
    for fact in facts:
        kind = fact[TYPE]
        if kind == "wait.started":
            open_by_queue.setdefault(fact[FIELDS]["queue"], []).append(fact)
        elif kind == "wait.ended":
            waiting = open_by_queue.get(fact[FIELDS]["queue"])
            if waiting:
                pairs.append((waiting.pop(0), fact))
    for waiting in open_by_queue.values():
        pairs.extend((start, None) for start in waiting)
    pairs.sort(key=_start_order)
    return pairs


def _start_order(pair: tuple[Fact, Fact | None]) -> tuple[int, str, str]:
    return _event_order(pair[0])


def withdrawn_removed(facts: list[Fact]) -> list[Fact]:
    """The facts without those a correction withdrew (``event.withdrawn``: every fact of
    its ``withdrawn_event_type`` at or before it), whatever order they arrived in. The
    corrections themselves stay: they are events of the journey (``event_count``).

    >>> checked_in = [10, "patient.checked_in", "hl7", "a04", "s1", "d", None, "pk", {"channel": "front_desk"}]
    >>> cancel = [20, "event.withdrawn", "hl7", "a11", "s1", "d", None, "pk", {"withdrawn_event_type": "patient.checked_in"}]
    >>> again = [30, "patient.checked_in", "hl7", "a04b", "s1", "d", None, "pk", {"channel": "front_desk"}]
    >>> [f[EVENT_ID] for f in withdrawn_removed([cancel, checked_in, again])]
    ['a11', 'a04b']
    """
    cutoffs: dict[str, int] = {}
    for fact in facts:
        if fact[TYPE] == WITHDRAWN:
            withdrawn = fact[FIELDS]["withdrawn_event_type"]
            cutoffs[withdrawn] = max(cutoffs.get(withdrawn, fact[MS]), fact[MS])
    if not cutoffs:
        return facts
    return [fact for fact in facts if fact[MS] > cutoffs.get(fact[TYPE], fact[MS] - 1)]


def compute_journey(appointment_id: str, facts: list[Fact], watermark_ms: int, policy: JourneyPolicy) -> JourneyView:
    facts = sorted(withdrawn_removed(facts), key=_event_order)
    # One pass in event-time order: the first fact of each type, and what needs more than the first.
    first: dict[str, Fact] = {}
    latest_schedule: Fact | None = None
    duration: int | None = None
    reschedules = 0
    reminders: list[int] = []
    patient_join: int | None = None
    provider_join: int | None = None
    patient_lefts: list[int] = []
    drops: list[int] = []
    issues = 0
    has_telehealth_events = False
    estimates: dict[str, list[tuple[int, float]]] = {}
    wait_facts: list[Fact] = []
    for fact in facts:
        kind = fact[TYPE]
        if kind not in first:
            first[kind] = fact
        if kind in _SCHEDULING_TYPES:
            latest_schedule = fact
            duration = fact[FIELDS].get("duration_min", duration)
            reschedules += kind == "appointment.rescheduled"
        elif kind == "appointment.reminder_sent":
            reminders.append(fact[MS])
        elif kind in _WAIT_TYPES:
            wait_facts.append(fact)
        elif kind == "wait.estimate_published":
            fields = fact[FIELDS]
            estimates.setdefault(fields["queue"], []).append((fact[MS], float(fields["estimated_wait_min"])))
        elif kind in TELEHEALTH_FAMILY_TYPES:
            has_telehealth_events = True
            if kind == "participant.joined":
                if fact[FIELDS]["role"] == "patient":
                    patient_join = fact[MS] if patient_join is None else patient_join
                elif provider_join is None:
                    provider_join = fact[MS]
            elif kind == "participant.left":
                fields = fact[FIELDS]
                if fields["role"] == "patient":
                    patient_lefts.append(fact[MS])
                if fields["reason"] == "dropped":
                    drops.append(fact[MS])
            elif kind == "connection.issue":
                issues += 1

    booked = first.get("appointment.booked")
    scheduled: int | None = latest_schedule[FIELDS]["scheduled_start"] if latest_schedule else None
    modality: str | None = booked[FIELDS]["modality"] if booked else None
    is_telehealth = modality == "telehealth" or (booked is None and has_telehealth_events)
    # Identity: the latest scheduling event says where the visit is; else the first event.
    anchor = latest_schedule or facts[0]
    provider = anchor[PROVIDER]
    if provider is None:
        provider = next((f[PROVIDER] for f in facts if f[PROVIDER] is not None), None)

    first_ms = {kind: fact[MS] for kind, fact in first.items()}.get
    arrived, checked_in, roomed = first_ms("patient.arrived"), first_ms("patient.checked_in"), first_ms("patient.roomed")
    started, checked_out = first_ms("provider.started"), first_ms("patient.checked_out")
    lwbs = first_ms("patient.left_without_being_seen")

    cancelled = first.get("appointment.cancelled")
    late_cancelled: bool | None
    if cancelled is None:
        late_cancelled = False
    elif scheduled is None:
        late_cancelled = None
    else:
        late_cancelled = (
            cancelled[FIELDS]["cancelled_by"] == "patient"
            and scheduled - cancelled[MS] < policy.late_cancel_window_ms
        )

    clock: StageClock = (scheduled, patient_join if is_telehealth else arrived, cancelled is not None)
    stage = watermark_stage(clock, watermark_ms, policy)
    inferred_no_show = stage & 1 == 1
    explicit_no_show = "appointment.no_show" in first
    no_show = explicit_no_show or inferred_no_show

    if is_telehealth:
        completed = patient_join is not None and provider_join is not None and "session.ended" in first
        in_progress = patient_join is not None
        # A patient who gave up before any provider joined left without being seen.
        gave_up = bool(patient_lefts) and provider_join is None
    else:
        completed = checked_out is not None
        in_progress = (arrived is not None or checked_in is not None or roomed is not None or started is not None)
        gave_up = False
    if cancelled is not None:
        status = "late_cancelled" if late_cancelled else "cancelled"
    elif explicit_no_show:
        status = "no_show"
    elif completed:
        status = "completed"
    elif lwbs is not None or gave_up:
        status = "left_without_being_seen"
    elif inferred_no_show:
        status = "no_show"
    elif in_progress:
        status = "in_progress"
    else:
        status = "scheduled"

    queue_wait_min, queue_abandoned, queue_rows, worst_error, touch_wait_errors = _queues(wait_facts, estimates)

    abandoned: bool | None = None
    connected: bool | None = None
    virtual_wait: float | None = None
    if is_telehealth:
        connected = patient_join is not None and provider_join is not None
        abandoned = any(provider_join is None or provider_join > left for left in patient_lefts)
        if patient_join is not None and provider_join is not None and patient_join < provider_join:
            virtual_wait = (provider_join - patient_join) / MINUTE_MS

    row: dict[str, Any] = {
        "appointment_id": appointment_id,
        "patient_key": (booked or facts[0])[PATIENT],
        "site_id": anchor[SITE],
        "department": anchor[DEPARTMENT],
        "provider_id": provider,
        "modality": modality,
        "visit_type": booked[FIELDS]["visit_type"] if booked else None,
        "scheduled_start": scheduled,
        "duration_min": duration,
        "booked_at": booked[MS] if booked else None,
        "status": status,
        "lead_time_days": (scheduled - booked[MS]) / DAY_MS if booked and scheduled is not None else None,
        "reschedule_count": reschedules,
        "late_cancelled": None if late_cancelled is None else int(late_cancelled),
        "cancelled_by": cancelled[FIELDS]["cancelled_by"] if cancelled else None,
        "cancelled_at": cancelled[MS] if cancelled else None,
        "no_show": int(no_show),
        "arrived_at": arrived,
        "checked_in_at": checked_in,
        "checkin_channel": first["patient.checked_in"][FIELDS]["channel"] if checked_in is not None else None,
        "roomed_at": roomed,
        "provider_started_at": started,
        "checked_out_at": checked_out,
        "left_without_being_seen_at": lwbs,
        "arrival_offset_min": minutes_between(scheduled, arrived),
        "arrival_to_checkin_min": minutes_between(arrived, checked_in),
        "lobby_wait_min": minutes_between(checked_in, roomed),
        "room_wait_min": minutes_between(roomed, started),
        "checkin_to_provider_min": minutes_between(checked_in, started),
        "provider_start_delay_min": minutes_between(scheduled, started),
        "cycle_time_min": minutes_between(arrived, checked_out),
        "queue_wait_min": queue_wait_min,
        "queue_abandoned": queue_abandoned,
        "wait_estimate_error_min": worst_error,
        "patient_joined_at": patient_join,
        "provider_joined_at": provider_join,
        "patient_join_offset_min": minutes_between(scheduled, patient_join) if is_telehealth else None,
        "provider_join_offset_min": minutes_between(scheduled, provider_join) if is_telehealth else None,
        "virtual_wait_min": virtual_wait,
        "telehealth_connected": None if connected is None else int(connected),
        "telehealth_abandoned": None if abandoned is None else int(abandoned),
        "drop_count": len(drops),
        "connection_issue_count": issues,
        "reminders_sent": _count_before(reminders, scheduled),
        "event_count": len(facts),
        "first_event_at": facts[0][MS],
        "last_event_at": facts[-1][MS],
    }

    intervals = _stage_intervals(arrived, checked_in, roomed, started, checked_out)
    if is_telehealth and patient_join is not None and (provider_join is None or patient_join < provider_join):
        intervals.append({"stage": "virtual_wait", "started_at": patient_join, "ended_at": provider_join,
                          "minutes": virtual_wait})
    if status != "in_progress":
        # A stage still open when the visit is over (left without being seen, a completed
        # visit missing an event) is not a patient waiting now: only closed stages stay.
        intervals = [interval for interval in intervals if interval["ended_at"] is not None]

    row["is_final"] = stage >> 1
    abandon_at = next((left for left in patient_lefts if provider_join is None or provider_join > left), None)
    touchpoints: dict[str, int | None] = {
        "lobby_wait_min": roomed,
        "room_wait_min": started,
        "provider_start_delay_min": started,
        "cycle_time_min": checked_out,
        "arrival_to_checkin_min": checked_in,
        "checkin_to_provider_min": started,
        "arrival_offset_min": arrived,
        "virtual_wait_min": provider_join,
        "patient_join_offset_min": patient_join,
        "provider_join_offset_min": provider_join,
        "telehealth_abandoned": abandon_at,
        "drop_count": drops[-1] if drops else None,
        "connection_issue_count": None,
        "no_show": scheduled,
        "late_cancelled": scheduled,
        "left_without_being_seen": lwbs,
        "lead_time_days": scheduled,
    }
    for key, ms in touch_wait_errors.items():
        touchpoints[f"wait:{key}"] = ms
    return JourneyView(
        row=row,
        intervals=intervals,
        queue_waits=queue_rows,
        touchpoints=touchpoints,
        flags={"left_without_being_seen": int(lwbs is not None)},
        stage=stage,
        deadlines=stage_deadlines(clock, policy),
        clock=clock,
    )


def _count_before(times: list[int], limit: int | None) -> int:
    if limit is None or not times:
        return 0
    return sum(1 for ms in times if ms < limit)


def _stage_intervals(arrived: int | None, checked_in: int | None, roomed: int | None, started: int | None,
                     checked_out: int | None) -> list[dict[str, Any]]:
    """The in-person stages (``IN_PERSON_STAGES``) that have begun; most journeys have none or all."""
    intervals = []
    stage_times = {"patient.arrived": arrived, "patient.checked_in": checked_in, "patient.roomed": roomed,
                   "provider.started": started, "patient.checked_out": checked_out}
    for stage, begin_kind, end_kind in IN_PERSON_STAGES:
        begin, end_ms = stage_times[begin_kind], stage_times[end_kind]
        if begin is not None:
            intervals.append({"stage": stage, "started_at": begin, "ended_at": end_ms, "minutes": minutes_between(begin, end_ms)})
    return intervals


def _queues(
    wait_facts: list[Fact], estimates: dict[str, list[tuple[int, float]]]
) -> tuple[dict[str, float], dict[str, int], list[dict[str, Any]], float | None, dict[str, int | None]]:
    """Per queue wait: its row, the totals per queue, the worst estimate error and when each error was known."""
    queue_wait_min: dict[str, float] = {}
    queue_abandoned: dict[str, int] = {}
    queue_rows: list[dict[str, Any]] = []
    worst_error: float | None = None
    touch_wait_errors: dict[str, int | None] = {}
    if not wait_facts:
        return queue_wait_min, queue_abandoned, queue_rows, worst_error, touch_wait_errors
    for start, end in _pair_queue_waits(wait_facts):
        queue = start[FIELDS]["queue"]
        wait_key = f"{start[SOURCE]}/{start[EVENT_ID]}"
        minutes = minutes_between(start[MS], end[MS]) if end else None
        outcome = end[FIELDS]["outcome"] if end else None
        estimate = error = None
        if end is not None:
            queue_wait_min.setdefault(queue, 0.0)
            queue_abandoned.setdefault(queue, 0)
        if end is not None and outcome == "called":
            queue_wait_min[queue] = queue_wait_min.get(queue, 0.0) + minutes  # type: ignore[operator]
            told = [value for ms, value in estimates.get(queue, ()) if ms <= end[MS]]
            if told:
                estimate = told[-1]
                error = minutes - estimate  # type: ignore[operator]
                if worst_error is None or abs(error) > abs(worst_error):
                    worst_error = error
                touch_wait_errors[wait_key] = end[MS]
        elif end is not None:
            queue_abandoned[queue] = queue_abandoned.get(queue, 0) + 1
        queue_rows.append(
            {
                "queue": queue,
                "wait_key": wait_key,
                "started_at": start[MS],
                "ended_at": end[MS] if end else None,
                "outcome": outcome,
                "wait_min": minutes,
                "estimated_wait_min": estimate,
                "estimate_error_min": error,
            }
        )
    return queue_wait_min, queue_abandoned, queue_rows, worst_error, touch_wait_errors
