"""Running a simulation: a stream of lines in delivery order, plus the truth.

:class:`SimulationStream` works one visit day at a time and keeps only what is still
to be delivered (bookings reach ``MAX_LEAD_DAYS`` ahead), so a year of a large network
streams in bounded memory. :func:`simulate` runs a whole (small) simulation into lists.

>>> from simulator import SimulationConfig, simulate
>>> sim = simulate(SimulationConfig(seed=1, days=1, sites=1, volume=4, invalid_fraction=0.05))
>>> from schemas.decode import decode, Rejected
>>> all(isinstance(decode(line), Rejected) == (n in sim.invalid_line_numbers)
...     for n, line in enumerate(sim.lines, 1))
True
>>> status = sim.truth[next(iter(sim.truth))].status
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson

from schemas.decode import Reason
from schemas.events import FAMILY_BY_TYPE, Family
from schemas.timestamps import DAY_MS
from simulator.churn import ChurnModel, Departure
from simulator.clock import utc_day_start
from simulator.config import SimulationConfig
from simulator.disorder import Delivery
from simulator.emit import Emitter
from simulator.model import MAX_LEAD_DAYS, Visit, simulate_day
from simulator.truth import AppointmentTruth, PatientLedger, PatientTruth, TruthRules, appointment_truth
from simulator.world import build_world


@dataclass(frozen=True, slots=True)
class SimLine:
    """One output line: raw bytes (no newline) and where it goes."""

    data: bytes
    family: Family  # the topic family (for a corrupted line: its original event's)
    key: str  # the message key: the appointment_id
    deliver_ms: int  # when it reaches the broker (output order)
    invalid: Reason | None  # the reason decode() must give, for an injected invalid line


@dataclass(slots=True)
class Stats:
    days_done: int = 0
    appointments: int = 0
    events: int = 0  # distinct valid events
    duplicates: int = 0
    invalid: int = 0
    lines: int = 0


def settle_after_ms(rules: TruthRules) -> int:
    """How long after its start an appointment's truth stops depending on later input."""
    return int(max(rules.no_show_grace_min * 60_000, rules.journey_close_after_h * 3_600_000))


@dataclass(frozen=True, slots=True)
class SimDay:
    """One simulated visit day: its appointments, their truth once settled, who left."""

    day_index: int
    visits: list[Visit]
    settled: list[AppointmentTruth]  # the truth of each visit as its day closes
    departures: list[Departure]


def simulate_days(config: SimulationConfig, rules: TruthRules) -> Iterator[SimDay]:
    """The world day by day, without events: what the truth and retention checks need.

    >>> from simulator.truth import TruthRules
    >>> days = list(simulate_days(SimulationConfig(seed=2, days=2, sites=1, volume=3), TruthRules()))
    >>> [day.day_index for day in days], all(len(d.visits) == len(d.settled) for d in days)
    ([0, 1], True)
    """
    world = build_world(config)
    churn = ChurnModel(config, rules)
    serial = itertools.count(1)
    settle_after = settle_after_ms(rules)
    for day_index in range(config.days):
        visits = simulate_day(world, config, day_index, serial)
        settled = [appointment_truth(v, v.scheduled_start + settle_after, rules) for v in visits]
        yield SimDay(day_index, visits, settled, churn.settle_day(world, day_index, visits, settled))


class SimulationStream:
    """Iterate to get :class:`SimLine` in delivery order.

    ``on_truth`` receives each appointment's truth as soon as it is settled (it
    depends on the final watermark only near the end of the input, so most records
    come out while streaming). After the iteration: :attr:`watermark_ms`,
    :meth:`patients` and :attr:`departures` (the patients who left, and why).
    """

    def __init__(
        self,
        config: SimulationConfig,
        on_truth: Callable[[AppointmentTruth], None] | None = None,
        rules: TruthRules | None = None,
    ) -> None:
        self.config = config
        self.on_truth = on_truth
        self.rules = rules or TruthRules()
        self.stats = Stats()
        self.watermark_ms: int | None = None
        self.departures: list[Departure] = []
        self._ledger = PatientLedger() if on_truth is not None else None
        self._pending: list[tuple[int, int, Visit]] = []  # (settles at, tie, visit)
        self._finished = False

    def _settle(self, watermark: int, final: bool) -> None:
        """Emit the truth of every visit whose truth no longer depends on later input."""
        pending = self._pending
        while pending and (final or pending[0][0] <= watermark):
            _, _, visit = heapq.heappop(pending)
            record = appointment_truth(visit, watermark, self.rules)
            if self._ledger is not None:
                self._ledger.add(record)
            assert self.on_truth is not None
            self.on_truth(record)

    def __iter__(self) -> Iterator[SimLine]:
        config = self.config
        delivery = Delivery(
            config.seed, config.duplicate_fraction, config.out_of_order_fraction, config.late_fraction,
            config.invalid_fraction,
        )
        cutoff = None if config.cutoff is None else int(config.cutoff.timestamp() * 1000)
        event_serial = itertools.count(1)
        queue: list[tuple[int, int, bytes, Family, str, Reason | None]] = []
        order = itertools.count()
        watermark = -(2**62)
        stats = self.stats
        settle_after = settle_after_ms(self.rules)

        def flush(until: int | None) -> Iterator[SimLine]:
            while queue and (until is None or queue[0][0] < until):
                deliver, _, data, family, key, reason = heapq.heappop(queue)
                stats.lines += 1
                yield SimLine(data, family, key, deliver, reason)

        for simulated in simulate_days(config, self.rules):
            day_index, visits = simulated.day_index, simulated.visits
            day = config.start + dt.timedelta(days=day_index)
            # Nothing generated from this day on occurs before this instant (a booking is
            # at most MAX_LEAD_DAYS ahead; a day margin covers every time zone).
            horizon = utc_day_start(day) - (MAX_LEAD_DAYS + 1) * DAY_MS
            if cutoff is not None and horizon > cutoff:
                break
            yield from flush(horizon)
            emitter = Emitter(random.Random(f"ids:{config.seed}:{day_index}"), event_serial)
            self.departures.extend(d for d in simulated.departures if cutoff is None or d.visit_at_ms <= cutoff)
            for visit in visits:
                if cutoff is not None:
                    seen = visit.truncate(cutoff)
                    if seen is None:
                        continue
                    visit = seen
                stats.appointments += 1
                for occurred, event in emitter.events(visit):
                    watermark = max(watermark, occurred)
                    # orjson's bytes keep its ~4 KiB working buffer; lines wait in the
                    # delivery heap for up to MAX_LEAD_DAYS, so keep an exact-size copy.
                    data = bytes(memoryview(orjson.dumps(event)))
                    family = FAMILY_BY_TYPE[event["event_type"]]
                    key = visit.appointment_id
                    deliver = delivery.deliver_at(occurred)
                    heapq.heappush(queue, (deliver, next(order), data, family, key, None))
                    stats.events += 1
                    resend = delivery.resend_at(deliver)
                    if resend is not None:
                        heapq.heappush(queue, (resend, next(order), data, family, key, None))
                        stats.duplicates += 1
                    broken = delivery.broken(event, deliver)
                    if broken is not None:
                        at, bad, reason = broken
                        heapq.heappush(queue, (at, next(order), bad, family, key, reason))
                        stats.invalid += 1
                if self.on_truth is not None:
                    settles = visit.scheduled_start + settle_after
                    heapq.heappush(self._pending, (settles, next(order), visit))
            stats.days_done += 1
            if self.on_truth is not None:
                self._settle(watermark, final=False)
        yield from flush(None)
        self.watermark_ms = watermark if stats.events else None
        if self.on_truth is not None:
            self._settle(watermark, final=True)
        self._finished = True

    def patients(self) -> dict[str, PatientTruth]:
        """Per-patient truth (only after the iteration, and only with ``on_truth``)."""
        if not self._finished or self._ledger is None or self.watermark_ms is None:
            return {}
        return self._ledger.patients(self.watermark_ms)


@dataclass(slots=True)
class Simulation:
    """A whole simulation in memory (tests, small runs)."""

    config: SimulationConfig
    items: list[SimLine]
    truth: dict[str, AppointmentTruth]
    patients: dict[str, PatientTruth]
    watermark_ms: int | None
    departures: list[Departure] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    @property
    def lines(self) -> list[bytes]:
        """Raw JSON lines (no newline) in delivery order."""
        return [item.data for item in self.items]

    @property
    def invalid_line_numbers(self) -> dict[int, Reason]:
        """1-based line number -> the reason ``decode()`` must reject it with."""
        return {n: item.invalid for n, item in enumerate(self.items, 1) if item.invalid is not None}


def simulate(config: SimulationConfig, rules: TruthRules | None = None) -> Simulation:
    """Run ``config`` to the end, keeping every line and the truth in memory."""
    truth: dict[str, AppointmentTruth] = {}
    stream = SimulationStream(config, on_truth=lambda r: truth.__setitem__(r.appointment_id, r), rules=rules)
    items = list(stream)
    return Simulation(
        config=config,
        items=items,
        truth=dict(sorted(truth.items())),
        patients=stream.patients(),
        watermark_ms=stream.watermark_ms,
        departures=stream.departures,
        stats=stream.stats,
    )
