"""The simulator's knobs: one frozen, validated model.

Every field has a default that produces a small but complete clinic network; bad values
are rejected with the field's name, so the CLI can print a clear message:

>>> from simulator.config import SimulationConfig
>>> SimulationConfig(seed=7, days=3).days
3
>>> SimulationConfig(duplicate_fraction=1.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for SimulationConfig
duplicate_fraction
  Input should be less than or equal to 0.5 [type=less_than_equal, input_value=1.5, input_type=float]
...
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Fraction = Annotated[float, Field(ge=0.0, le=0.5, allow_inf_nan=False)]
Multiplier = Annotated[float, Field(ge=0.0, le=20.0, allow_inf_nan=False)]


class SimulationConfig(BaseModel):
    """What to simulate, and how badly to deliver it.

    - ``seed``: the whole output (bytes, order, truth) is a pure function of the config.
    - ``days``: visit days simulated from ``start`` (bookings for them begin up to
      :data:`~simulator.model.MAX_LEAD_DAYS` earlier).
    - ``sites``: clinics; each has 2-4 departments of 2-4 providers.
    - ``volume``: booked slots per provider-day (weekends are lighter).
    - ``start``: the first visit day (site-local calendar date).
    - ``duplicate_fraction``: share of events re-sent verbatim (same bytes, same event_id).
    - ``out_of_order_fraction``: share delivered 1-20 minutes after their neighbours.
    - ``late_fraction``: share delivered 1-12 hours after ``occurred_at``.
    - ``invalid_fraction``: per valid event, chance of an extra corrupted line
      (malformed JSON, unknown type, missing field, bad enum, naive timestamp,
      unsupported schema version, in turn at random).
    - ``cutoff``: optional instant at which the world stops ("now" of a live export):
      nothing that happens later is emitted, so the last journeys are in progress,
      scheduled or awaiting their no-show deadline. ``None``: every journey runs to its end.
    - ``friction_churn``: the causal effect of friction on patients leaving: after a
      completed visit that crossed any friction rule, the chance that the patient leaves
      the practice is the department's baseline times this (1.0: friction costs nobody).
    - ``friction_churn_rules``: that multiplier per friction rule or per severity
      (``{"lobby_wait": 2.0, "low": 1.1}``); a rule's own entry wins over its severity's,
      and a visit that crossed several rules takes the largest multiplier among them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: Annotated[int, Field(ge=0)] = 1
    days: Annotated[int, Field(ge=1, le=3660)] = 7
    sites: Annotated[int, Field(ge=1, le=200)] = 3
    volume: Annotated[int, Field(ge=1, le=60)] = 12
    start: dt.date = dt.date(2026, 3, 2)
    duplicate_fraction: Fraction = 0.0
    out_of_order_fraction: Fraction = 0.0
    late_fraction: Fraction = 0.0
    invalid_fraction: Fraction = 0.0
    cutoff: AwareDatetime | None = None
    friction_churn: Multiplier = 1.5
    friction_churn_rules: dict[str, Multiplier] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _disorder_fits(self) -> SimulationConfig:
        # One random draw decides between "late" and "out of order" for an event, so
        # the two shares must fit in one unit interval.
        if self.late_fraction + self.out_of_order_fraction > 1.0:  # pragma: no cover - bounded by Fraction
            raise ValueError("late_fraction + out_of_order_fraction must be <= 1")
        if self.cutoff is not None and self.cutoff.date() < self.start - dt.timedelta(days=1):
            raise ValueError("cutoff: must not be before start (nothing would be emitted)")
        return self
