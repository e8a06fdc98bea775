"""JSON Schema (draft 2020-12) of the wire contract, one document per event family.

Data engineers adding a source validate their events against these files with any JSON
Schema tool, without Python. Each document is a ``oneOf`` over the family's event types,
discriminated by ``event_type``, generated from the pydantic models the pipeline itself
validates with (so the two cannot drift apart).

>>> from schemas.export import family_schema, example_event
>>> schema = family_schema("waits")
>>> schema["$id"], schema["x-contract-version"], schema["x-topic"]
('urn:patient-journeys:contract:v1:waits', 1, 'journey.waits')
>>> sorted(schema["x-discriminator"]["mapping"])
['wait.ended', 'wait.estimate_published', 'wait.started']
>>> example_event("wait.ended")["outcome"]
'called'

Where JSON Schema and the decoder can differ: timestamps carry a pattern that demands
an RFC 3339 offset (``Z`` or ``±hh:mm``) and seconds, as SPEC section 2 says; the decoder
also accepts ``±hhmm`` and a missing seconds field. JSON Schema treats ``1.0`` as an
integer; the decoder (strict) does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from schemas.events import (
    DEFAULT_TOPICS,
    EVENT_TYPES_BY_FAMILY,
    FAMILIES,
    FAMILY_BY_TYPE,
    MODEL_BY_TYPE,
    SCHEMA_VERSION,
    Family,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = f"urn:patient-journeys:contract:v{SCHEMA_VERSION}"

# RFC 3339 date-time with a mandatory offset: "format" alone is only an annotation in
# most validators, so naive timestamps would pass; the pattern makes them fail anywhere.
RFC3339_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"

FAMILY_TITLES: dict[Family, str] = {
    "scheduling": "Scheduling events",
    "checkin": "Check-in events",
    "waits": "Wait-time events",
    "telehealth": "Telehealth events",
}

# SPEC section 2, envelope table: copied into each schema so the files stand alone.
FIELD_DESCRIPTIONS: dict[str, str] = {
    "event_id": "Unique per source; the dedupe key (the same id seen twice is one event).",
    "event_type": "The event type; must belong to this family (the topic's family).",
    "schema_version": "Contract version; always 1.",
    "occurred_at": "Event time, RFC 3339 with a UTC offset; naive timestamps are rejected.",
    "source": "The emitting system, e.g. cadence, hl7-siu, kiosk, simulator.",
    "patient_id": "The source's patient identifier. PHI: pseudonymised before analytics.",
    "appointment_id": "The visit this event belongs to; the journey key and the Kafka message key.",
    "site_id": "Clinic or facility.",
    "department": "e.g. cardiology, primary_care.",
    "provider_id": "Optional provider identifier.",
    "attributes": "Optional free-form extra fields, kept but not interpreted.",
    "scheduled_start": "Scheduled start of the visit, RFC 3339 with a UTC offset.",
    "duration_min": "Scheduled duration in minutes (> 0).",
    "visit_type": "Kind of visit, e.g. new_patient, follow_up.",
    "modality": "in_person or telehealth.",
    "cancelled_by": "Who cancelled: patient or clinic.",
    "reason": "appointment.cancelled: free text; participant.left: normal or dropped.",
    "channel": "Reminder channel (sms, email, call, portal) or check-in channel (front_desk, kiosk, mobile).",
    "room": "Optional room identifier.",
    "queue": "Queue name, e.g. lobby, lab, imaging, pharmacy, virtual_waiting_room.",
    "outcome": "How the wait ended: called or abandoned.",
    "estimated_wait_min": "The wait the patient was told, in minutes (>= 0).",
    "role": "patient or provider.",
    "kind": "Connection issue kind: audio, video or network.",
    "severity": "Optional severity, 1 (minor) to 3 (severe).",
}

_ENVELOPE_EXAMPLE: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "occurred_at": "2026-03-02T09:55:00-05:00",
    "source": "simulator",
    "patient_id": "p-000123",
    "appointment_id": "a-000456",
    "site_id": "site-north",
    "department": "cardiology",
    "provider_id": "dr-017",
}

# The family fields of one valid example per event type (SPEC section 2).
_EXAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "appointment.booked": {
        "scheduled_start": "2026-03-02T10:00:00-05:00",
        "duration_min": 30,
        "visit_type": "follow_up",
        "modality": "in_person",
    },
    "appointment.rescheduled": {"scheduled_start": "2026-03-03T10:00:00-05:00", "duration_min": 45},
    "appointment.cancelled": {"cancelled_by": "patient", "reason": "feeling better"},
    "appointment.no_show": {},
    "appointment.reminder_sent": {"channel": "sms"},
    "patient.arrived": {},
    "patient.checked_in": {"channel": "kiosk"},
    "patient.roomed": {"room": "exam-4"},
    "provider.started": {},
    "patient.checked_out": {},
    "patient.left_without_being_seen": {},
    "wait.started": {"queue": "lobby"},
    "wait.ended": {"queue": "lobby", "outcome": "called"},
    "wait.estimate_published": {"queue": "lobby", "estimated_wait_min": 12.5},
    "session.created": {},
    "participant.joined": {"role": "patient"},
    "participant.left": {"role": "patient", "reason": "dropped"},
    "connection.issue": {"role": "provider", "kind": "video", "severity": 2},
    "session.ended": {},
}


def example_event(event_type: str, /, **overrides: Any) -> dict[str, Any]:
    """A valid event of ``event_type`` (contract v1) as a dict; ``overrides`` replace fields."""
    if event_type not in _EXAMPLE_FIELDS:
        raise KeyError(f"not an event type of contract v1: {event_type!r}")
    event = {
        "event_id": f"ex-{event_type}",
        "event_type": event_type,
        **_ENVELOPE_EXAMPLE,
        **_EXAMPLE_FIELDS[event_type],
    }
    event.update(overrides)
    return event


def _decorate(node: Any) -> None:
    """Add descriptions and the timestamp pattern throughout a generated schema."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, prop in properties.items():
                if name in FIELD_DESCRIPTIONS and isinstance(prop, dict):
                    prop.setdefault("description", FIELD_DESCRIPTIONS[name])
        if node.get("format") == "date-time":
            node["pattern"] = RFC3339_WITH_OFFSET
        for value in node.values():
            _decorate(value)
    elif isinstance(node, list):
        for value in node:
            _decorate(value)


def family_schema(family: Family) -> dict[str, Any]:
    """The JSON Schema document of ``family``, discriminated by ``event_type``.

    The discrimination is spelled ``allOf`` of ``if event_type == X then <X's schema>``
    rather than a bare ``oneOf``: with ``oneOf`` an invalid event fails *every* branch and
    validators report only "not valid under any of the given schemas"; with if/then they
    name the field that is wrong. ``x-discriminator`` keeps the OpenAPI-style mapping
    for code generators.
    """
    event_types = EVENT_TYPES_BY_FAMILY[family]
    models = tuple(MODEL_BY_TYPE[t] for t in event_types)
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[Union[models], Field(discriminator="event_type")])  # type: ignore[valid-type,arg-type]
    generated = adapter.json_schema(ref_template="#/$defs/{model}")
    _decorate(generated)
    definitions: dict[str, Any] = generated["$defs"]
    for event_type, model in zip(event_types, models):
        definition = definitions[model.__name__]
        definition["description"] = f"{event_type} (family {family})"
        definition["examples"] = [example_event(event_type)]
    mapping = {t: f"#/$defs/{m.__name__}" for t, m in zip(event_types, models)}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{ID_PREFIX}:{family}",
        "title": f"{FAMILY_TITLES[family]} (patient journey contract v{SCHEMA_VERSION})",
        "description": (
            f"One JSON object per Kafka message on topic {DEFAULT_TOPICS[family]!r} (default name), "
            f"message key = appointment_id (UTF-8). Event types: {', '.join(event_types)}. "
            "Unknown top-level fields are ignored; free-form data belongs in 'attributes'. "
            "Invalid events are dead-lettered to 'journey.deadletter'."
        ),
        "x-contract-version": SCHEMA_VERSION,
        "x-family": family,
        "x-topic": DEFAULT_TOPICS[family],
        "x-message-key": "appointment_id",
        "x-discriminator": {"propertyName": "event_type", "mapping": mapping},
        "type": "object",
        "required": ["event_type"],
        "properties": {
            "event_type": {
                "enum": list(event_types),
                "description": f"One of the {family} event types; selects the schema below.",
            }
        },
        "allOf": [
            {
                "if": {"properties": {"event_type": {"const": t}}, "required": ["event_type"]},
                "then": {"$ref": ref},
            }
            for t, ref in mapping.items()
        ],
        "$defs": definitions,
    }


def all_schemas() -> dict[Family, dict[str, Any]]:
    """The schema document of every family."""
    return {family: family_schema(family) for family in FAMILIES}


def export_schemas(directory: str | Path) -> list[Path]:
    """Write ``<family>.schema.json`` for every family into ``directory``; return the paths.

    The directory is created if needed; existing files are overwritten (the output
    is deterministic, so a re-export of the same contract gives the same bytes).
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for family, schema in all_schemas().items():
        path = target / f"{family}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


assert set(_EXAMPLE_FIELDS) == set(FAMILY_BY_TYPE), "one example per event type of the contract"
