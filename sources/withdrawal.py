"""The ``event.withdrawn`` correction as the sources see it; the model is ``schemas.events.EventWithdrawn``.

Every fact of type ``withdrawn_event_type`` for this appointment whose ``occurred_at`` is at
or before the withdrawal's is withdrawn, so a correction that arrives before the fact it
corrects still applies (``schemas/CORRECTIONS.md``). It travels on the topic of the
withdrawn type's family.

>>> event = {"event_id": "m1/event.withdrawn/patient.checked_in", "event_type": "event.withdrawn",
...          "schema_version": 1, "occurred_at": "2026-03-02T10:05:00-05:00", "source": "hl7",
...          "patient_id": "p1", "appointment_id": "V1", "site_id": "s1", "department": "cardio",
...          "withdrawn_event_type": "patient.checked_in"}
>>> withdrawal_problem(event) is None
True
>>> withdrawal_problem({**event, "withdrawn_event_type": "event.withdrawn"})
('withdrawn_event_type', "withdrawn_event_type: 'event.withdrawn' is not an event type of contract v1")
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from schemas.events import WITHDRAWN, EventWithdrawn

__all__ = ["WITHDRAWN", "withdrawal_problem"]


def withdrawal_problem(event: dict[str, Any]) -> tuple[str, str] | None:
    """``None`` if ``event`` is a valid withdrawal, else ``(field, detail)``."""
    try:
        EventWithdrawn.model_validate_json(orjson.dumps(event))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "<event>"
        message = first["msg"].removeprefix("Value error, ")
        return field, f"{field}: {message}"
    return None
