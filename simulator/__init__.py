"""Clinic traffic simulator: realistic contract-v1 event streams with their exact truth.

A seeded model of sites, departments, providers and a patient population books,
reminds, reschedules and cancels appointments, runs each provider's day as a
single-server queue (delays cascade), and plays out in-person visits, queue waits and
telehealth sessions. The events are delivered with optional duplicates, disorder,
late arrivals and corrupted lines; the truth gives every metric of METRICS.md per
appointment and per patient, computed from the model's facts.

>>> from simulator import SimulationConfig, simulate
>>> sim = simulate(SimulationConfig(seed=42, days=1, sites=1, volume=6))
>>> sim.lines[0][:14]
b'{"event_id":"c'
>>> sim == simulate(SimulationConfig(seed=42, days=1, sites=1, volume=6))
True
"""

from simulator.config import SimulationConfig
from simulator.run import SimLine, Simulation, SimulationStream, Stats, simulate
from simulator.truth import (
    AppointmentTruth,
    CompletedVisit,
    FrictionHit,
    PatientTruth,
    TruthRules,
)

__all__ = [
    "AppointmentTruth",
    "CompletedVisit",
    "FrictionHit",
    "PatientTruth",
    "SimLine",
    "Simulation",
    "SimulationConfig",
    "SimulationStream",
    "Stats",
    "TruthRules",
    "simulate",
]
