"""The ``event.withdrawn`` contract extension (a correction), built and checked locally.

The lead adds this type to ``schemas``; until then sources emit it as a dict and check it
here. Semantics: every fact of type ``withdrawn_event_type`` for this appointment whose
``occurred_at`` is at or before the withdrawal's ``occurred_at`` is withdrawn, so a
correction that arrives before the fact it corrects still applies. It travels on the topic
of the withdrawn type's family.

>>> event = {"event_id": "m1/event.withdrawn/patient.checked_in", "event_type": "event.withdrawn",
...          "schema_version": 1, "occurred_at": "2026-03-02T10:05:00-05:00", "source": "hl7",
...          "patient_id": "p1", "appointment_id": "V1", "site_id": "s1", "department": "cardio",
...          "withdrawn_event_type": "patient.checked_in"}
>>> withdrawal_problem(event) is None, withdrawal_family(event)
(True, 'checkin')
>>> withdrawal_problem({**event, "withdrawn_event_type": "event.withdrawn"})
('withdrawn_event_type', "withdrawn_event_type: 'event.withdrawn' is not a contract event type")
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError, field_validator

from schemas.events import FAMILY_BY_TYPE, Envelope, Family

WITHDRAWN = "event.withdrawn"


class Withdrawal(Envelope):
    """The envelope plus the type of the facts withdrawn."""

    event_type: Literal["event.withdrawn"]
    withdrawn_event_type: str

    @field_validator("withdrawn_event_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in FAMILY_BY_TYPE:
            raise ValueError(f"{value!r} is not a contract event type")
        return value


def withdrawal_problem(event: dict[str, Any]) -> tuple[str, str] | None:
    """``None`` if ``event`` is a valid withdrawal, else ``(field, detail)``."""
    try:
        Withdrawal.model_validate_json(_json(event))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "<event>"
        message = first["msg"].removeprefix("Value error, ")
        return field, f"{field}: {message}"
    return None


def withdrawal_family(event: dict[str, Any]) -> Family:
    """The family (hence topic) a withdrawal travels on."""
    return FAMILY_BY_TYPE[event["withdrawn_event_type"]]


def _json(event: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(event)
