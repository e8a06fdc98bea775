"""Small builders of contract-v1 event bytes for hand-written journey scenarios."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count
from typing import Any

import orjson

EST = timezone(timedelta(hours=-5))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=EST)
_ids = count(1)


def at(minutes: float) -> str:
    """A timestamp ``minutes`` after 09:00 EST on 2026-03-02, with its offset."""
    return (T0 + timedelta(minutes=minutes)).isoformat()


def event(event_type: str, minutes: float, appointment_id: str = "A1", **fields: Any) -> bytes:
    body = {
        "event_id": fields.pop("event_id", f"ev-{next(_ids)}"),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": at(minutes),
        "source": fields.pop("source", "test"),
        "patient_id": fields.pop("patient_id", "MRN-1"),
        "appointment_id": appointment_id,
        "site_id": fields.pop("site_id", "site-a"),
        "department": fields.pop("department", "cardiology"),
        "provider_id": fields.pop("provider_id", "dr-1"),
        **fields,
    }
    return orjson.dumps(body)


def booked(minutes: float, start_minutes: float, appointment_id: str = "A1", modality: str = "in_person", **kw: Any) -> bytes:
    return event("appointment.booked", minutes, appointment_id, scheduled_start=at(start_minutes), duration_min=20,
                 visit_type="follow_up", modality=modality, **kw)


def in_person_visit(appointment_id: str = "A1", booked_days_before: float = 10, **kw: Any) -> list[bytes]:
    """A complete in-person visit at 09:00: arrives 08:50, lobby 25 min, room 10 min, out 10:05."""
    return [
        booked(-booked_days_before * 1440, 0, appointment_id, **kw),
        event("appointment.reminder_sent", -1440, appointment_id, channel="sms", **kw),
        event("patient.arrived", -10, appointment_id, **kw),
        event("patient.checked_in", -4, appointment_id, channel="kiosk", **kw),
        event("patient.roomed", 21, appointment_id, room="4", **kw),
        event("provider.started", 31, appointment_id, **kw),
        event("patient.checked_out", 65, appointment_id, **kw),
    ]
