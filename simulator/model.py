"""The simulation model: what really happens to every appointment, as plain facts.

A :class:`Visit` holds every fact of one appointment as epoch-ms instants (bookings,
reminders, stage times, queue waits, telehealth presence). The wire events
(:mod:`simulator.emit`) and the truth (:mod:`simulator.truth`) are both
derived from these facts, never from each other.

Each provider's day is a single-server queue: the provider sees one patient at a
time in booked order, so a late start or a long visit pushes every later patient's
rooming and start back (lobby and room waits grow along the day), and a no-show gives
the provider a chance to catch up.

>>> from simulator.config import SimulationConfig
>>> from simulator.world import build_world
>>> config = SimulationConfig(seed=5, sites=1, days=1, volume=10)
>>> world = build_world(config)
>>> visits = simulate_day(world, config, 0, itertools.count(1))
>>> sorted({v.modality for v in visits})
['in_person', 'telehealth']
>>> all(v.booked_at < v.scheduled_start for v in visits)
True
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from dataclasses import dataclass, field, replace
from typing import Literal

from schemas.events import (
    CancelledBy,
    CheckinChannel,
    IssueKind,
    LeaveReason,
    Modality,
    ReminderChannel,
    Role,
    WaitOutcome,
)
from schemas.timestamps import DAY_MS, HOUR_MS, MINUTE_MS
from simulator.clock import local_ms
from simulator.config import SimulationConfig
from simulator.world import Department, Patient, Provider, Site, World

MAX_LEAD_DAYS = 60  # bookings happen at most this long before the visit
Fate = Literal["attend", "no_show", "cancel"]

QUEUE_SOURCE = "qflow"  # the queue-management system (boards, lab/pharmacy tickets)
TELEHEALTH_SOURCE = "telehealth-hub"


# -- facts ------------------------------------------------------------------------


@dataclass(slots=True)
class Reschedule:
    at: int
    start: int
    duration: int | None


@dataclass(slots=True)
class Cancel:
    at: int
    by: CancelledBy
    reason: str | None


@dataclass(slots=True)
class Reminder:
    at: int
    channel: ReminderChannel


@dataclass(slots=True)
class Report:
    """One system reporting a stage (a check-in can be reported by the kiosk and the EHR)."""

    at: int
    source: str
    value: str | None = None  # check-in channel, room


@dataclass(slots=True)
class QueueWait:
    queue: str
    started: int
    ended: int | None  # None: the end was never recorded (an open wait)
    outcome: WaitOutcome | None
    estimates: list[tuple[int, float]] = field(default_factory=list)
    source: str = QUEUE_SOURCE


@dataclass(slots=True)
class Presence:
    at: int
    role: Role
    joined: bool  # False: left
    reason: LeaveReason | None = None


@dataclass(slots=True)
class Issue:
    at: int
    role: Role
    kind: IssueKind
    severity: int | None


@dataclass(slots=True)
class Visit:
    """Everything that happened to one appointment (instants are epoch ms, UTC)."""

    appointment_id: str
    patient: Patient
    site: Site
    department: str
    provider_id: str
    modality: Modality
    visit_type: str
    fate: Fate
    booked_at: int
    booked_start: int
    booked_duration: int
    booking_channel: str | None = None
    reschedules: list[Reschedule] = field(default_factory=list)
    cancel: Cancel | None = None
    reminders: list[Reminder] = field(default_factory=list)
    no_show_at: int | None = None  # the clinic recorded an appointment.no_show
    # in person
    arrived: list[Report] = field(default_factory=list)
    checked_in: list[Report] = field(default_factory=list)
    roomed: list[Report] = field(default_factory=list)
    provider_started: int | None = None
    checked_out: int | None = None
    left_without_being_seen: int | None = None
    waits: list[QueueWait] = field(default_factory=list)
    # telehealth
    session_created: int | None = None
    presence: list[Presence] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    session_ended: int | None = None

    @property
    def patient_id(self) -> str:
        return self.patient.patient_id

    @property
    def scheduled_start(self) -> int:
        """The start in force: the latest booking or reschedule (they are strictly ordered)."""
        return self.reschedules[-1].start if self.reschedules else self.booked_start

    def truncate(self, cutoff: int) -> Visit | None:
        """The visit as seen at ``cutoff``: facts after it have not happened (None: not booked yet)."""
        if self.booked_at > cutoff:
            return None

        def keep(at: int | None) -> int | None:
            return at if at is not None and at <= cutoff else None

        waits = []
        for wait in self.waits:
            if wait.started > cutoff:
                continue
            closed = wait.ended is not None and wait.ended <= cutoff
            waits.append(
                replace(
                    wait,
                    ended=wait.ended if closed else None,
                    outcome=wait.outcome if closed else None,
                    estimates=[e for e in wait.estimates if e[0] <= cutoff],
                )
            )
        return replace(
            self,
            reschedules=[r for r in self.reschedules if r.at <= cutoff],
            cancel=self.cancel if self.cancel is not None and self.cancel.at <= cutoff else None,
            reminders=[r for r in self.reminders if r.at <= cutoff],
            no_show_at=keep(self.no_show_at),
            arrived=[r for r in self.arrived if r.at <= cutoff],
            checked_in=[r for r in self.checked_in if r.at <= cutoff],
            roomed=[r for r in self.roomed if r.at <= cutoff],
            provider_started=keep(self.provider_started),
            checked_out=keep(self.checked_out),
            left_without_being_seen=keep(self.left_without_being_seen),
            waits=waits,
            session_created=keep(self.session_created),
            presence=[p for p in self.presence if p.at <= cutoff],
            issues=[i for i in self.issues if i.at <= cutoff],
            session_ended=keep(self.session_ended),
        )


# -- the day ----------------------------------------------------------------------


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


class _DayModel:
    """Simulates one provider-day after another for one calendar day."""

    def __init__(self, world: World, config: SimulationConfig, day_index: int, serial: itertools.count[int]) -> None:
        self.world = world
        self.config = config
        self.day_index = day_index
        self.day = config.start + dt.timedelta(days=day_index)
        self.rng = random.Random(f"day:{config.seed}:{day_index}")
        self.serial = serial
        weekday = self.day.weekday()
        # Weekends are light (urgent slots, Saturday clinics), never empty.
        self.load = 1.0 if weekday < 5 else 0.5 if weekday == 5 else 0.25

    # ---- helpers
    def minutes(self, low: float, high: float) -> int:
        """A random duration in ms, uniformly between ``low`` and ``high`` minutes."""
        return int(self.rng.uniform(low, high) * MINUTE_MS)

    @staticmethod
    def ehr_time(site: Site, at: float) -> int:
        # HL7 v2 timestamps carry whole seconds: the fact itself is at the second, so
        # the wire value and the truth agree to the millisecond.
        ms = int(at)
        return ms - ms % 1000 if site.ehr_source == "hl7-siu" else ms

    def run(self) -> list[Visit]:
        visits: list[Visit] = []
        for site in self.world.sites:
            for site_department in site.departments:
                for provider in site_department.providers:
                    visits.extend(self.provider_day(site, site_department.department, provider))
        return visits

    # ---- scheduling
    def slots(self, site: Site, department: Department) -> list[tuple[int, int, str]]:
        """(start ms, booked minutes, visit type) of the provider's booked template today."""
        rng = self.rng
        count = max(1, round(self.config.volume * self.load * rng.uniform(0.8, 1.2)))
        names = [vt.name for vt in department.visit_types]
        weights = [vt.weight for vt in department.visit_types]
        durations = {vt.name: vt.duration_min for vt in department.visit_types}
        minute = float(department.day_start_min)
        lunch_taken = False
        result = []
        for _ in range(count):
            if minute >= 12 * 60 and not lunch_taken:
                minute, lunch_taken = max(minute, 13 * 60.0), True
            name = rng.choices(names, weights)[0]
            start = local_ms(self.day, minute, site.tz)
            result.append((start, durations[name], name))
            if rng.random() < 0.03:  # double-booked slot: overbooking against no-shows
                other = rng.choices(names, weights)[0]
                result.append((start, durations[other], other))
            minute += durations[name]
        return result

    def book(
        self, site: Site, department: Department, provider: Provider, start: int, duration: int, visit_type: str,
        after: int | None = None,
    ) -> Visit:
        """One appointment for the slot at ``start``: its booking history, fate and reminders.

        ``after``: a backfill of a cancelled slot, booked after that cancellation.
        """
        rng = self.rng
        patient = self.world.panels[(site.site_id, department.name)].next_due(self.day_index)
        modality: Modality = "telehealth" if rng.random() < department.telehealth_share else "in_person"
        if after is None:
            # Lead times are long-tailed: many within two weeks, some a month or two out.
            lead_days = _clamp(rng.lognormvariate(math.log(9.0), 1.0), 0.02, MAX_LEAD_DAYS - 0.01)
            earliest = start - lead_days * DAY_MS
        else:
            earliest = rng.uniform(after + MINUTE_MS, start - 30 * MINUTE_MS)
        if patient.booked_after_ms is not None:
            # A returning patient books after their last visit (at checkout, or a call soon
            # after): a visit they may leave the practice after has not booked the next.
            earliest = max(earliest, rng.uniform(patient.booked_after_ms, min(start, patient.booked_after_ms + 3 * DAY_MS)))
        booked_at = self.ehr_time(site, min(earliest, start - 30 * MINUTE_MS))
        patient.booked_after_ms = start + HOUR_MS
        visit = Visit(
            appointment_id=f"{site.site_id[:3].upper()}-{self.world.run_tag}-{next(self.serial):07d}",
            patient=patient, site=site, department=department.name, provider_id=provider.provider_id,
            modality=modality, visit_type=visit_type, fate="attend",
            booked_at=booked_at, booked_start=start, booked_duration=duration,
            booking_channel=rng.choice(("phone", "portal", "referral", "front_desk")) if rng.random() < 0.5 else None,
        )
        self.reschedule(visit, start, duration)
        self.decide_fate(visit)
        self.remind(visit)
        return visit

    def reschedule(self, visit: Visit, start: int, duration: int) -> None:
        rng = self.rng
        draw = rng.random()
        count = 0 if draw < 0.85 else 1 if draw < 0.96 else 2 if draw < 0.99 else 3
        low, high = visit.booked_at + 10 * MINUTE_MS, start - HOUR_MS
        if count == 0 or high - low < count * 10 * MINUTE_MS:
            return
        times = sorted(self.ehr_time(visit.site, rng.uniform(low, high)) for _ in range(count))
        if len(set(times)) < count:
            return
        # The start in force before reschedule j must still lie ahead when the patient
        # calls (nobody reschedules an appointment that already happened).
        starts = []
        for at in times:
            previous = at + rng.uniform(2 * HOUR_MS, 14 * DAY_MS)
            starts.append(int(previous - previous % (5 * MINUTE_MS)))
        visit.booked_start = starts[0]
        with_duration = [rng.random() < 0.3 for _ in times]
        choices = (15, 20, 30, 40, 60)
        durations: list[int | None] = [rng.choice(choices) if keep else None for keep in with_duration]
        if any(with_duration):
            # The last reschedule that names a duration names the slot's real length.
            last = max(i for i, keep in enumerate(with_duration) if keep)
            durations[last] = duration
            visit.booked_duration = rng.choice(choices)
        for j, at in enumerate(times):
            new_start = starts[j + 1] if j + 1 < count else start
            visit.reschedules.append(Reschedule(at=at, start=new_start, duration=durations[j]))

    def decide_fate(self, visit: Visit) -> None:
        rng = self.rng
        start = visit.scheduled_start
        last_change = visit.reschedules[-1].at if visit.reschedules else visit.booked_at
        if rng.random() < 0.09:
            by: CancelledBy = "patient" if rng.random() < 0.7 else "clinic"
            if by == "patient":
                late = rng.random() < 0.35 or start - DAY_MS - MINUTE_MS <= last_change
                if not late:
                    at = rng.uniform(last_change + MINUTE_MS, start - DAY_MS - 1000)
                elif rng.random() < 0.05:
                    at = start + rng.uniform(1, 20) * MINUTE_MS  # called after the start: late too
                else:
                    at = rng.uniform(max(last_change + MINUTE_MS, start - DAY_MS + 1000), start - 5 * MINUTE_MS)
                reason = rng.choice(("schedule_conflict", "feeling_better", "transportation", None))
            else:
                at = rng.uniform(last_change + MINUTE_MS, start - 30 * MINUTE_MS)
                reason = rng.choice(("provider_unavailable", "weather", "equipment_down", None))
            if last_change + MINUTE_MS <= at:
                visit.cancel = Cancel(at=self.ehr_time(visit.site, at), by=by, reason=reason)
                visit.fate = "cancel"
                return
        lead_days = (start - visit.booked_at) / DAY_MS
        p = visit.patient.no_show_p * (1.6 if visit.patient.reminder_optout else 1.0) * (1.0 + lead_days / 45.0)
        if visit.modality == "telehealth":
            p *= 0.8
        if rng.random() < min(p, 0.7):
            visit.fate = "no_show"
            if rng.random() < 0.55:  # the clinic records it; otherwise it is silent
                visit.no_show_at = self.ehr_time(visit.site, start + 30 * MINUTE_MS + rng.uniform(1, 150) * MINUTE_MS)

    def remind(self, visit: Visit) -> None:
        """Reminders by the site's policy, for the start in force when each is due."""
        rng = self.rng
        if visit.patient.reminder_optout:
            return
        segments = [(visit.booked_at, visit.booked_start)] + [(r.at, r.start) for r in visit.reschedules]
        stop = visit.cancel.at if visit.cancel is not None else None
        for index, (valid_from, start) in enumerate(segments):
            valid_to = segments[index + 1][0] if index + 1 < len(segments) else None
            for hours, channel in visit.site.reminder_policy:
                if rng.random() < 0.08:
                    continue  # not sent (or not recorded) this time
                at = self.ehr_time(visit.site, start - hours * HOUR_MS + rng.uniform(-20, 20) * MINUTE_MS)
                if at <= valid_from or (valid_to is not None and at >= valid_to) or (stop is not None and at >= stop):
                    continue
                visit.reminders.append(Reminder(at=at, channel=channel))
        if visit.cancel is None and rng.random() < 0.015:
            # A portal "reminder" sent after the start (a known misconfiguration): it
            # must not count as sent before the visit.
            at = self.ehr_time(visit.site, visit.scheduled_start + rng.uniform(60, 240) * MINUTE_MS)
            visit.reminders.append(Reminder(at=at, channel="portal"))
        visit.reminders.sort(key=lambda r: r.at)

    # ---- the provider's day
    def provider_day(self, site: Site, department: Department, provider: Provider) -> list[Visit]:
        rng = self.rng
        visits: list[Visit] = []
        for start, duration, visit_type in self.slots(site, department):
            visit = self.book(site, department, provider, start, duration, visit_type)
            visits.append(visit)
            cancel = visit.cancel
            if cancel is not None and cancel.at < start - 3 * HOUR_MS and rng.random() < 0.4:
                visits.append(self.book(site, department, provider, start, duration, visit_type, after=cancel.at))
        day_start = local_ms(self.day, department.day_start_min, site.tz)
        late = rng.random() < provider.late_start_p
        free = day_start + (self.minutes(5, 25) if late else self.minutes(-5, 2))
        pace = provider.pace * rng.lognormvariate(0.0, 0.08)
        for visit in visits:  # booked order: the provider's queue
            if visit.fate == "cancel":
                continue
            if visit.modality == "in_person":
                if visit.fate == "attend":
                    free = self.in_person(visit, department, free, pace)
            else:
                free = self.telehealth(visit, free, pace)
        return visits

    def queue_wait(self, queue: str, begin: float, median: float, patience: float, can_stay_open: bool) -> QueueWait:
        """A wait in a queue from ``begin``, with its published estimates."""
        rng = self.rng
        actual = rng.lognormvariate(math.log(median), 0.6)
        started = int(begin)
        abandoned = actual > patience and rng.random() < 0.6
        length = patience if abandoned else actual
        ended = started + int(length * MINUTE_MS)
        wait = QueueWait(queue=queue, started=started, ended=ended, outcome="abandoned" if abandoned else "called")
        self.estimates(wait)
        if can_stay_open and not abandoned and rng.random() < 0.02:
            wait.ended, wait.outcome = None, None  # the queue system never recorded the end
        return wait

    def estimates(self, wait: QueueWait) -> None:
        """Publish what the patient is told: usually close, sometimes badly wrong."""
        rng = self.rng
        assert wait.ended is not None
        if rng.random() >= 0.75 or wait.ended - wait.started < 10_000:
            return
        actual = (wait.ended - wait.started) / MINUTE_MS
        draw = rng.random()
        error = rng.gauss(0.0, 4.0) if draw < 0.65 else rng.uniform(15.5, 45.0) if draw < 0.85 else rng.uniform(-14.0, -4.0)
        told = max(0.0, actual - error)
        told = float(round(told)) if rng.random() < 0.7 else round(told, 1)
        # Over-estimates stay under 15 minutes: the friction rule compares the signed
        # error, so a large over-estimate would make its reading ambiguous.
        if actual - told < -14.5:
            told = float(math.floor(actual + 14.0))
        span = wait.ended - wait.started
        if span > 2 * MINUTE_MS and rng.random() < 0.35:
            first = wait.started + rng.randint(1000, 5000)
            wait.estimates.append((first, round(actual * rng.uniform(0.3, 1.5))))
            last = wait.started + int(span * rng.uniform(0.3, 0.8))
        else:
            last = wait.started + rng.randint(1000, min(5000, span - 1))
        wait.estimates.append((last, told))
        if rng.random() < 0.05:
            # A board refresh just after the wait ended: not "before the wait ended".
            wait.estimates.append((wait.ended + rng.randint(5000, 60000), round(rng.uniform(0, 30))))

    def in_person(self, visit: Visit, department: Department, free: int, pace: float) -> int:
        rng, site, patient = self.rng, visit.site, visit.patient
        start = visit.scheduled_start
        offset = patient.punctuality_min + rng.gauss(0.0, 6.0)
        if rng.random() < 0.06:
            offset += rng.uniform(5.0, 25.0)  # traffic, parking
        # Clinics turn away patients more than ~30 minutes late (they rebook), so every
        # arrival is before the no-show deadline.
        arrived = start + int(_clamp(offset, -45.0, 28.0) * MINUTE_MS) + rng.randint(0, 999)
        channel: CheckinChannel
        if patient.prefers_mobile and rng.random() < 0.7:
            channel = "mobile"
        elif site.has_kiosk and rng.random() < 0.6:
            channel = "kiosk"
        else:
            channel = "front_desk"
        if channel == "mobile":
            checked_in = arrived + self.minutes(0.1, 1.5)
            if rng.random() < 0.05:
                checked_in = arrived - self.minutes(0.5, 4.0)  # "I'm here" from the car park
        elif channel == "kiosk":
            checked_in = arrived + self.minutes(0.3, 3.0)
        else:
            local_hour = (start - local_ms(self.day, 0, site.tz)) / HOUR_MS
            rush = 1.8 if local_hour < 9.5 else 1.0
            checked_in = arrived + int(min(40.0, rng.expovariate(1.0 / (site.front_desk_load * rush))) * MINUTE_MS)
        arrival_source = "rtls" if site.has_rtls else "kiosk" if channel == "kiosk" else (
            "mobile-app" if channel == "mobile" else site.ehr_source)
        checkin_source = {"kiosk": "kiosk", "mobile": "mobile-app", "front_desk": site.ehr_source}[channel]
        if arrival_source == site.ehr_source:
            arrived = self.ehr_time(site, arrived)
        if checkin_source == site.ehr_source:
            checked_in = self.ehr_time(site, checked_in)
        visit.arrived.append(Report(arrived, arrival_source))
        visit.checked_in.append(Report(checked_in, checkin_source, channel))
        if channel != "front_desk" and rng.random() < 0.06:
            # The EHR records the same check-in again a little later: "first" must win.
            echo = self.ehr_time(site, checked_in + self.minutes(0.5, 4.0))
            visit.checked_in.append(Report(echo, site.ehr_source, "front_desk"))

        # The medical assistant rooms the patient shortly before the provider is free.
        room_ready = max(checked_in + self.minutes(1.0, 4.0), free - self.minutes(2.0, 10.0))
        patience = 75.0 * patient.patience * rng.lognormvariate(0.0, 0.3)
        lobby_source_start = checked_in + rng.randint(500, 3000)
        if (room_ready - checked_in) / MINUTE_MS > patience:
            left = self.ehr_time(site, checked_in + int(patience * MINUTE_MS))
            visit.left_without_being_seen = left
            if site.has_queue_board:
                wait = QueueWait("lobby", lobby_source_start, left, "abandoned")
                self.estimates(wait)
                visit.waits.append(wait)
            return free  # the provider never saw them
        roomed = self.ehr_time(site, room_ready)
        room_number = rng.randint(1, 12)
        visit.roomed.append(Report(roomed, site.ehr_source, f"exam-{room_number}"))
        provider_started = self.ehr_time(site, max(roomed + self.minutes(1.0, 6.0), free + self.minutes(0.0, 1.0)))
        if rng.random() < 0.03 and provider_started - roomed > 3 * MINUTE_MS:
            # Moved to another room before the provider came in: a second `roomed`.
            moved = self.ehr_time(site, roomed + (provider_started - roomed) // 2)
            visit.roomed.append(Report(moved, site.ehr_source, f"exam-{room_number % 12 + 1}"))
        visit.provider_started = provider_started
        if site.has_queue_board:
            wait = QueueWait("lobby", lobby_source_start, roomed, "called")
            self.estimates(wait)
            visit.waits.append(wait)
        length = visit_duration(self.rng, self.booked_minutes(visit), pace)
        provider_end = provider_started + length
        # After the visit: lab and imaging before checking out, the pharmacy after.
        t = provider_end + self.minutes(1.0, 3.0)
        for queue, p, median, service in (("lab", department.lab_p, 8.0, (3, 8)), ("imaging", department.imaging_p, 15.0, (10, 25))):
            if rng.random() < p:
                wait = self.queue_wait(queue, t, median, 45.0 * patient.patience, can_stay_open=True)
                visit.waits.append(wait)
                end = wait.ended if wait.ended is not None else t + 20 * MINUTE_MS
                t = end + (self.minutes(*service) if wait.outcome != "abandoned" else 0) + self.minutes(0.5, 3)
        visit.checked_out = self.ehr_time(site, t + self.minutes(0.5, 4.0))
        if rng.random() < department.pharmacy_p:
            begin = visit.checked_out + self.minutes(2.0, 6.0)
            visit.waits.append(self.queue_wait("pharmacy", begin, 12.0, 40.0 * patient.patience, can_stay_open=True))
        return provider_end + self.minutes(0.5, 4.0)

    @staticmethod
    def booked_minutes(visit: Visit) -> int:
        duration = visit.booked_duration
        for change in visit.reschedules:
            if change.duration is not None:
                duration = change.duration
        return duration

    def telehealth(self, visit: Visit, free: int, pace: float) -> int:
        rng, patient = self.rng, visit.patient
        start = visit.scheduled_start
        # Created before anyone can join (patients join at most 15 minutes early).
        visit.session_created = start - self.minutes(16, 60)
        provider_ready = max(free + self.minutes(0.2, 2.0), start - self.minutes(0.0, 4.0))
        presence = visit.presence

        if visit.fate == "no_show":
            # The provider joins, waits for a patient who never comes, and moves on.
            left = provider_ready + self.minutes(5, 12)
            presence += [Presence(provider_ready, "provider", True), Presence(left, "provider", False, "normal")]
            visit.session_ended = left + rng.randint(10_000, 60_000)
            return left + self.minutes(0.5, 2.0)

        offset = _clamp(rng.gauss(-3.0, 4.0) + (rng.uniform(5, 20) if rng.random() < 0.05 else 0.0), -15.0, 25.0)
        patient_join = start + int(offset * MINUTE_MS) + rng.randint(0, 999)
        presence.append(Presence(patient_join, "patient", True))
        waiting = provider_ready - patient_join
        # Waiting-room bookkeeping only for a real wait (the platform's ticket opens a
        # few seconds after the join); a join seconds before the provider is not a wait.
        if waiting > 10_000:
            patience = 30.0 * patient.patience * rng.lognormvariate(0.0, 0.3)
            room = QueueWait("virtual_waiting_room", patient_join + rng.randint(500, 3000), None, None,
                             source=TELEHEALTH_SOURCE)
            if waiting > patience * MINUTE_MS:
                # Abandoned: the patient gives up before the provider joins.
                left = patient_join + int(patience * MINUTE_MS)
                presence.append(Presence(left, "patient", False, "normal"))
                room.ended, room.outcome = left, "abandoned"
                self.estimates(room)
                visit.waits.append(room)
                end = left
                if rng.random() < 0.3:  # the provider joins late and finds nobody
                    gone = provider_ready + self.minutes(1, 4)
                    presence += [Presence(provider_ready, "provider", True), Presence(gone, "provider", False, "normal")]
                    free = end = gone
                if rng.random() < 0.8:
                    visit.session_ended = end + self.minutes(1, 10)
                return free
            if waiting > 3 * MINUTE_MS and rng.random() < 0.04:
                # Connection lost in the waiting room, back a moment later.
                drop = patient_join + rng.randint(30_000, waiting - 90_000)
                presence += [Presence(drop, "patient", False, "dropped"),
                             Presence(drop + rng.randint(20_000, 60_000), "patient", True)]
            room.ended, room.outcome = provider_ready, "called"
            self.estimates(room)
            if rng.random() < 0.85:
                visit.waits.append(room)
        presence.append(Presence(provider_ready, "provider", True))
        begin = max(patient_join, provider_ready)
        length = visit_duration(rng, self.booked_minutes(visit), pace)
        end = begin + length

        # Drops (each in its own stretch of the visit, so a role never drops twice
        # without rejoining) and connection issues.
        draw = rng.random()
        drops = 0 if draw < 0.75 else 1 if draw < 0.9 else 2 if draw < 0.97 else 3
        stretch = length // (drops + 1)
        patient_gone = False
        for index in range(drops):
            if stretch < 3 * MINUTE_MS:
                break
            role: Role = "patient" if rng.random() < 0.7 else "provider"
            at = begin + index * stretch + rng.randint(30_000, stretch - 90_000)
            presence.append(Presence(at, role, False, "dropped"))
            if role == "patient" and index == drops - 1 and rng.random() < 0.1:
                patient_gone, end = True, at  # never came back: the visit ends there
                break
            presence.append(Presence(at + rng.randint(15_000, 60_000), role, True))
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 4)):
                kind: IssueKind = rng.choice(("audio", "video", "network"))
                severity = rng.randint(1, 3) if rng.random() < 0.8 else None
                who: Role = "patient" if rng.random() < 0.65 else "provider"
                visit.issues.append(Issue(begin + rng.randint(0, max(1, end - begin)), who, kind, severity))
            visit.issues.sort(key=lambda i: i.at)
        last = end + rng.randint(0, 30_000)
        presence.append(Presence(last, "provider", False, "normal"))
        if not patient_gone:
            patient_last = end + rng.randint(0, 60_000)
            presence.append(Presence(patient_last, "patient", False, "normal"))
            last = max(last, patient_last)
        presence.sort(key=lambda p: p.at)
        visit.session_ended = last + rng.randint(5_000, 60_000)
        return end + self.minutes(0.5, 3.0)


def visit_duration(rng: random.Random, booked_minutes: int, pace: float) -> int:
    """How long the provider really spends: booked length x pace, long-tailed (ms).

    Visits end a little early on average (the slot includes documentation), but short
    visits vary most: a 15-minute sick visit can take 25, a 50-minute therapy session
    is held to the clock.
    """
    sigma = min(0.3, 5.0 / booked_minutes)
    return int(booked_minutes * pace * rng.lognormvariate(-0.15, sigma) * MINUTE_MS)


def simulate_day(world: World, config: SimulationConfig, day_index: int, serial: itertools.count[int]) -> list[Visit]:
    """Every appointment whose (final) slot is on day ``day_index``, with all its facts.

    ``serial`` numbers appointments across days (appointment ids are unique per run and,
    through the world's run tag, across runs). The booked patients are out of their
    panels until :mod:`simulator.churn` settles the day.
    """
    return _DayModel(world, config, day_index, serial).run()
