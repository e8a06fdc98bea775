"""The static world: sites, departments, providers and the patient population.

Built once per run from the seed; only patient weights change over the run (patients
who had a bad visit come back less often, so "does friction cost us patients?" has an
answer in the data).

>>> from simulator.config import SimulationConfig
>>> world = build_world(SimulationConfig(seed=3, sites=2, days=5))
>>> [site.site_id for site in world.sites]
['nyc-midtown', 'chi-loop']
>>> world.sites[0].departments[0].department.name
'primary_care'
>>> len({p.patient_id for pop in world.population.by_site for p in pop}) == world.population.size
True
"""

from __future__ import annotations

import bisect
import itertools
import random
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


def _vt(*items: tuple[str, int, float]) -> tuple[VisitType, ...]:
    return tuple(VisitType(n, d, w) for n, d, w in items)


DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "primary_care", 0.2,
        _vt(("annual_physical", 30, 0.25), ("follow_up", 20, 0.45), ("sick_visit", 15, 0.2), ("new_patient", 40, 0.1)),
        8 * 60, 0.35, 0.05, 0.2,
    ),
    Department(
        "cardiology", 0.1,
        _vt(("follow_up", 20, 0.5), ("new_patient", 40, 0.25), ("echo_review", 30, 0.25)),
        8 * 60, 0.2, 0.15, 0.1,
    ),
    Department(
        "behavioral_health", 0.6,
        _vt(("therapy", 50, 0.6), ("med_management", 20, 0.3), ("intake", 60, 0.1)),
        9 * 60, 0.0, 0.0, 0.05,
    ),
    Department(
        "dermatology", 0.15,
        _vt(("follow_up", 15, 0.5), ("new_patient", 30, 0.3), ("procedure", 30, 0.2)),
        8 * 60, 0.05, 0.0, 0.1,
    ),
    Department(
        "orthopedics", 0.05,
        _vt(("follow_up", 15, 0.5), ("new_patient", 30, 0.3), ("injection", 20, 0.2)),
        8 * 60, 0.05, 0.35, 0.1,
    ),
    Department(
        "pediatrics", 0.1,
        _vt(("well_child", 30, 0.4), ("sick_visit", 15, 0.4), ("follow_up", 20, 0.2)),
        7 * 60 + 30, 0.15, 0.02, 0.2,
    ),
    Department(
        "endocrinology", 0.3,
        _vt(("follow_up", 20, 0.6), ("new_patient", 40, 0.4)),
        8 * 60, 0.5, 0.0, 0.15,
    ),
    Department(
        "oncology", 0.1,
        _vt(("follow_up", 30, 0.5), ("infusion_consult", 45, 0.2), ("new_patient", 60, 0.3)),
        8 * 60, 0.6, 0.2, 0.3,
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
    site_index: int
    no_show_p: float
    reminder_optout: bool
    punctuality_min: float  # mean arrival offset, minutes (negative: early)
    patience: float  # multiplies how long they will wait before leaving
    prefers_mobile: bool
    weight: float


@dataclass(slots=True)
class Population:
    """Patients per home site, drawn with weights so that some are frequent visitors."""

    by_site: list[list[Patient]]
    _cumulative: list[list[float]] = field(default_factory=list)
    _dirty: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._cumulative = [list(itertools.accumulate(p.weight for p in pop)) for pop in self.by_site]

    @property
    def size(self) -> int:
        return sum(len(pop) for pop in self.by_site)

    def pick(self, rng: random.Random, site_index: int) -> Patient:
        # A few patients are seen away from their home site (referrals, convenience).
        if len(self.by_site) > 1 and rng.random() < 0.05:
            site_index = rng.randrange(len(self.by_site))
        cumulative = self._cumulative[site_index]
        position = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        return self.by_site[site_index][min(position, len(cumulative) - 1)]

    def discourage(self, patient: Patient, factor: float) -> None:
        """A bad experience makes the patient less likely to book again."""
        patient.weight *= factor
        self._dirty.add(patient.site_index)

    def refresh(self) -> None:
        """Apply weight changes (once per simulated day: cheaper than per change)."""
        for index in sorted(self._dirty):
            self._cumulative[index] = list(itertools.accumulate(p.weight for p in self.by_site[index]))
        self._dirty.clear()


@dataclass(slots=True)
class World:
    sites: list[Site]
    population: Population


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

    by_site: list[list[Patient]] = []
    serial = itertools.count(1)
    for site in sites:
        provider_count = sum(len(d.providers) for d in site.departments)
        expected = provider_count * config.volume * config.days * 0.9
        count = max(25, round(expected / config.visits_per_patient))
        patients = []
        for _ in range(count):
            patients.append(
                Patient(
                    patient_id=f"MRN{next(serial) * 7919 % 100_000_000:08d}",
                    site_index=site.index,
                    # Most patients nearly always come; a minority often do not.
                    no_show_p=min(0.6, rng.betavariate(1.2, 16.0) * (3.0 if rng.random() < 0.1 else 1.0)),
                    reminder_optout=rng.random() < 0.1,
                    punctuality_min=rng.gauss(-9.0, 5.0),
                    patience=rng.lognormvariate(0.0, 0.3),
                    prefers_mobile=rng.random() < 0.25,
                    weight=rng.lognormvariate(0.0, 0.9),
                )
            )
        by_site.append(patients)
    return World(sites=sites, population=Population(by_site))
