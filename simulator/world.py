"""The static world: sites, departments, providers and each department's patient panel.

Built once per run from the seed. Patients belong to one department's panel at their
home site and come back on that department's care cadence (a follow-up every few weeks),
so nobody books a dozen visits a day. After a completed visit a patient may leave the
practice for good (:mod:`simulator.churn` decides, friction raising the chance); the
panel takes new patients into the slots nobody is due for.

>>> from simulator.config import SimulationConfig
>>> world = build_world(SimulationConfig(seed=3, sites=2, days=5))
>>> [site.site_id for site in world.sites]
['nyc-midtown', 'chi-loop']
>>> world.sites[0].departments[0].department.name
'primary_care'
>>> panel = world.panels[("nyc-midtown", "primary_care")]
>>> first = panel.next_due(0)
>>> first.patient_id != panel.next_due(0).patient_id  # booked: not offered twice
True
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from schemas.events import ReminderChannel
from simulator.config import SimulationConfig

EhrSource = Literal["cadence", "hl7-siu"]


@dataclass(frozen=True, slots=True)
class VisitType:
    name: str
    duration_min: int
    weight: float


@dataclass(frozen=True, slots=True)
class Department:
    """A specialty: its visit mix, how much of it is telehealth, and what follows a visit."""

    name: str
    telehealth_share: float
    visit_types: tuple[VisitType, ...]
    day_start_min: int  # local minutes after midnight when the first slot starts
    lab_p: float  # chance that a visit sends the patient to the lab queue
    imaging_p: float
    pharmacy_p: float
    cadence_days: float  # typical days between a patient's visits (follow-up interval)
    attrition: float  # baseline chance that a patient leaves after a completed visit


def _vt(*items: tuple[str, int, float]) -> tuple[VisitType, ...]:
    return tuple(VisitType(n, d, w) for n, d, w in items)


DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "primary_care", 0.2,
        _vt(("annual_physical", 30, 0.25), ("follow_up", 20, 0.45), ("sick_visit", 15, 0.2), ("new_patient", 40, 0.1)),
        8 * 60, 0.35, 0.05, 0.2, 42, 0.03,
    ),
    Department(
        "cardiology", 0.1,
        _vt(("follow_up", 20, 0.5), ("new_patient", 40, 0.25), ("echo_review", 30, 0.25)),
        8 * 60, 0.2, 0.15, 0.1, 35, 0.025,
    ),
    Department(
        "behavioral_health", 0.6,
        _vt(("therapy", 50, 0.6), ("med_management", 20, 0.3), ("intake", 60, 0.1)),
        9 * 60, 0.0, 0.0, 0.05, 14, 0.05,
    ),
    Department(
        "dermatology", 0.15,
        _vt(("follow_up", 15, 0.5), ("new_patient", 30, 0.3), ("procedure", 30, 0.2)),
        8 * 60, 0.05, 0.0, 0.1, 30, 0.04,
    ),
    Department(
        "orthopedics", 0.05,
        _vt(("follow_up", 15, 0.5), ("new_patient", 30, 0.3), ("injection", 20, 0.2)),
        8 * 60, 0.05, 0.35, 0.1, 21, 0.05,
    ),
    Department(
        "pediatrics", 0.1,
        _vt(("well_child", 30, 0.4), ("sick_visit", 15, 0.4), ("follow_up", 20, 0.2)),
        7 * 60 + 30, 0.15, 0.02, 0.2, 35, 0.02,
    ),
    Department(
        "endocrinology", 0.3,
        _vt(("follow_up", 20, 0.6), ("new_patient", 40, 0.4)),
        8 * 60, 0.5, 0.0, 0.15, 30, 0.03,
    ),
    Department(
        "oncology", 0.1,
        _vt(("follow_up", 30, 0.5), ("infusion_consult", 45, 0.2), ("new_patient", 60, 0.3)),
        8 * 60, 0.6, 0.2, 0.3, 21, 0.015,
    ),
)

SITE_NAMES: tuple[tuple[str, str], ...] = (
    ("nyc-midtown", "America/New_York"),
    ("chi-loop", "America/Chicago"),
    ("sea-harbor", "America/Los_Angeles"),
    ("den-highlands", "America/Denver"),
    ("phx-camelback", "America/Phoenix"),
    ("bos-backbay", "America/New_York"),
    ("atl-midtown", "America/New_York"),
    ("dal-uptown", "America/Chicago"),
    ("sfo-mission", "America/Los_Angeles"),
    ("hnl-kakaako", "Pacific/Honolulu"),
)

# Reminder policies: (hours before the start, channel). A site uses one of them.
REMINDER_POLICIES: tuple[tuple[tuple[float, ReminderChannel], ...], ...] = (
    ((72.0, "email"), (24.0, "sms"), (2.0, "sms")),
    ((48.0, "call"), (24.0, "portal")),
    ((168.0, "email"), (48.0, "sms"), (3.0, "sms")),
    ((24.0, "sms"),),
)


@dataclass(slots=True)
class Provider:
    provider_id: str
    late_start_p: float  # chance the provider starts the day late
    pace: float  # typical visit length / booked length (>1: runs long, so the day slips)


@dataclass(slots=True)
class SiteDepartment:
    department: Department
    providers: list[Provider]


@dataclass(slots=True)
class Site:
    site_id: str
    index: int
    tz: ZoneInfo
    ehr_source: EhrSource  # scheduling and rooming events come from this system
    has_kiosk: bool
    has_rtls: bool  # real-time locating: arrivals come from badges, not the desk
    has_queue_board: bool  # lobby queue events and published wait estimates
    front_desk_load: float  # mean front-desk line, minutes (arrival -> check-in)
    reminder_policy: tuple[tuple[float, ReminderChannel], ...]
    departments: list[SiteDepartment]


@dataclass(slots=True)
class Patient:
    patient_id: str
    no_show_p: float
    reminder_optout: bool
    punctuality_min: float  # mean arrival offset, minutes (negative: early)
    patience: float  # multiplies how long they will wait before leaving
    prefers_mobile: bool
    cadence_days: float  # this patient's usual days between visits
    booked_after_ms: int | None = None  # their next booking is made after this (the last visit)


def _new_patient(rng: random.Random, patient_id: str, cadence_days: float) -> Patient:
    return Patient(
        patient_id=patient_id,
        # Most patients nearly always come; a minority often do not.
        no_show_p=min(0.6, rng.betavariate(1.2, 16.0) * (3.0 if rng.random() < 0.1 else 1.0)),
        reminder_optout=rng.random() < 0.1,
        punctuality_min=rng.gauss(-9.0, 5.0),
        patience=rng.lognormvariate(0.0, 0.3),
        prefers_mobile=rng.random() < 0.25,
        cadence_days=cadence_days * rng.uniform(0.8, 1.2),
    )


@dataclass(slots=True)
class Panel:
    """The patients of one department at one site, each due back on a day of the run.

    A slot goes to the most overdue patient; when nobody is due, to a new patient. A
    booked patient is out of the panel until the visit's outcome is known
    (:meth:`come_back`) or they leave (never offered again), so a patient has at most one
    appointment a day.
    """

    department: Department
    rng: random.Random
    patient_ids: Iterator[str]
    _due: list[tuple[int, int, Patient]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, patient: Patient, due_day: int) -> None:
        heapq.heappush(self._due, (due_day, next(self._order), patient))

    def next_due(self, day_index: int) -> Patient:
        """The patient for a slot on ``day_index``: the most overdue one, else a new one."""
        if self._due and self._due[0][0] <= day_index:
            return heapq.heappop(self._due)[2]
        return _new_patient(self.rng, next(self.patient_ids), self.department.cadence_days)

    def come_back(self, patient: Patient, day_index: int, completed: bool, rng: random.Random) -> None:
        """Book the patient's next visit: on their cadence after a visit, soon after a miss."""
        days = patient.cadence_days * rng.uniform(0.85, 1.15) if completed else rng.uniform(2.0, 10.0)
        self.add(patient, day_index + max(1, round(days)))


@dataclass(slots=True)
class World:
    sites: list[Site]
    panels: dict[tuple[str, str], Panel]  # (site_id, department) -> its patients
    run_tag: str  # in every appointment id: runs of other seeds or periods never collide


def _site_name(index: int) -> tuple[str, str]:
    name, tz = SITE_NAMES[index % len(SITE_NAMES)]
    return (name if index < len(SITE_NAMES) else f"{name}-{index // len(SITE_NAMES) + 1}"), tz


def build_world(config: SimulationConfig) -> World:
    """Sites, providers and patients for ``config`` (deterministic for its seed)."""
    rng = random.Random(f"world:{config.seed}")
    sites: list[Site] = []
    for index in range(config.sites):
        name, tz = _site_name(index)
        # Primary care everywhere; a rotating choice of specialties beside it.
        others = list(DEPARTMENTS[1:])
        rng.shuffle(others)
        chosen = [DEPARTMENTS[0], *others[: rng.randint(1, 3)]]
        departments: list[SiteDepartment] = []
        for department in chosen:
            providers: list[Provider] = []
            for _ in range(rng.randint(2, 4)):
                number = len([p for d in departments for p in d.providers]) + len(providers)
                providers.append(
                    Provider(
                        provider_id=f"prv-{index + 1:03d}{number + 1:03d}",
                        late_start_p=rng.uniform(0.05, 0.3),
                        # Most providers run close to time; some routinely run long.
                        pace=rng.choice((0.9, 0.95, 1.0, 1.0, 1.05, 1.15)),
                    )
                )
            departments.append(SiteDepartment(department, providers))
        sites.append(
            Site(
                site_id=name,
                index=index,
                tz=ZoneInfo(tz),
                ehr_source="hl7-siu" if index % 3 == 1 else "cadence",
                has_kiosk=rng.random() < 0.7,
                has_rtls=rng.random() < 0.3,
                has_queue_board=index % 2 == 0 or rng.random() < 0.5,
                front_desk_load=rng.uniform(2.0, 6.0),
                reminder_policy=REMINDER_POLICIES[index % len(REMINDER_POLICIES)],
                departments=departments,
            )
        )

    # Mean booked slots per provider-day over a week (weekends are light), the extra
    # bookings of missed visits rebooked (about 1 in 6), and room for new patients (10%):
    # the panel that keeps the slots full of due patients from the first day.
    weekly_load = (5 * 1.0 + 0.5 + 0.25) / 7
    serial = itertools.count(1)
    patient_ids = (f"MRN{n * 7919 % 100_000_000:08d}" for n in serial)
    panels: dict[tuple[str, str], Panel] = {}
    for site in sites:
        for site_department in site.departments:
            department = site_department.department
            panel_rng = random.Random(f"panel:{config.seed}:{site.site_id}:{department.name}")
            panel = Panel(department, panel_rng, patient_ids)
            daily = len(site_department.providers) * config.volume * weekly_load
            for _ in range(round(daily * department.cadence_days / 1.17 * 0.9)):
                patient = _new_patient(panel_rng, next(patient_ids), department.cadence_days)
                panel.add(patient, int(panel_rng.uniform(0, patient.cadence_days)))
            panels[(site.site_id, department.name)] = panel
    run_tag = hashlib.blake2b(f"{config.seed}:{config.start}".encode(), digest_size=3).hexdigest()
    return World(sites=sites, panels=panels, run_tag=run_tag)
