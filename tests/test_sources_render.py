"""Round trips: contract event -> HL7 v2 / FHIR -> source -> the same event (event_id, source aside)."""

from __future__ import annotations

import pytest

from sources.fhir import FHIRSource
from sources.hl7 import HL7Source
from sources.render import FHIR_CANNOT_CARRY, HL7_CANNOT_CARRY, FHIRRenderer, render_hl7
from tests.test_sources_hl7 import valid

BASE = {"schema_version": 1, "source": "simulator", "patient_id": "MRN00012345", "appointment_id": "NOR-00000042",
        "site_id": "northside", "department": "cardiology", "provider_id": "PRV-0007"}


def ev(n: int, event_type: str, at: str, **fields: object) -> dict:
    return {"event_id": f"sim-{n}", "event_type": event_type, "occurred_at": at, **BASE, **fields}


JOURNEY = [
    ev(1, "appointment.booked", "2026-03-01T16:20:00-05:00", scheduled_start="2026-03-10T09:30:00-05:00",
       duration_min=30, visit_type="new_patient", modality="in_person"),
    ev(2, "appointment.rescheduled", "2026-03-03T10:00:00-05:00", scheduled_start="2026-03-10T11:00:00-05:00", duration_min=40),
    ev(3, "patient.arrived", "2026-03-10T10:48:00-05:00"),
    ev(4, "patient.checked_in", "2026-03-10T10:50:00-05:00", channel="front_desk"),
    ev(5, "patient.roomed", "2026-03-10T11:05:00-05:00", room="RM 12|A"),
    ev(6, "provider.started", "2026-03-10T11:12:00-05:00"),
    ev(7, "patient.checked_out", "2026-03-10T11:58:30.250-05:00"),
]
CANCELLED = [
    ev(8, "appointment.booked", "2026-03-01T16:20:00+01:00", scheduled_start="2026-03-12T08:00:00+01:00",
       duration_min=20, visit_type="follow_up", modality="telehealth"),
    ev(9, "appointment.cancelled", "2026-03-11T09:00:00+01:00", cancelled_by="patient", reason="transport & weather"),
]
NO_SHOW = [
    ev(10, "appointment.booked", "2026-03-01T16:20:00-08:00", scheduled_start="2026-03-12T08:00:00-07:00",
       duration_min=15, visit_type="annual", modality="in_person"),
    ev(11, "appointment.no_show", "2026-03-12T08:30:00-07:00"),
]


def same(original: dict, mapped: dict) -> None:
    strip = lambda e: {k: v for k, v in e.items() if k not in ("event_id", "source")}  # noqa: E731
    assert strip(mapped) == strip(original)


@pytest.mark.parametrize("journey", [JOURNEY, CANCELLED, NO_SHOW], ids=["visit", "cancelled", "no_show"])
def test_hl7_round_trip(journey: list[dict]) -> None:
    source = HL7Source()
    for event in journey:
        [back] = valid(source.map(render_hl7(event)))  # type: ignore[arg-type]
        same(event, back)


@pytest.mark.parametrize("journey", [JOURNEY, CANCELLED, NO_SHOW], ids=["visit", "cancelled", "no_show"])
def test_fhir_round_trip(journey: list[dict]) -> None:
    renderer, source = FHIRRenderer(), FHIRSource()
    for event in journey:
        [back] = valid(source.map(renderer.render(event)))  # type: ignore[arg-type]
        same(event, back)


def test_what_cannot_be_carried() -> None:
    expected = {
        "appointment.reminder_sent", "patient.left_without_being_seen",
        "wait.started", "wait.ended", "wait.estimate_published",
        "session.created", "participant.joined", "participant.left", "connection.issue", "session.ended",
    }
    assert HL7_CANNOT_CARRY == expected and FHIR_CANNOT_CARRY == expected
    with pytest.raises(ValueError, match="cannot carry wait.started"):
        render_hl7(ev(12, "wait.started", "2026-03-10T10:50:00-05:00", queue="lobby"))
    with pytest.raises(ValueError, match="without room"):
        render_hl7(ev(13, "patient.roomed", "2026-03-10T10:50:00-05:00"))
