"""Turn raw message bytes plus their topic into a valid event or a dead-letter verdict.

>>> from schemas.decode import decode
>>> verdict = decode(b'{"event_type": "patient.arrived"', topic="journey.checkin")
>>> verdict.reason, verdict.detail
('malformed_json', 'not valid JSON: EOF while parsing an object at line 1 column 32')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from schemas.events import (
    DEFAULT_TOPICS,
    EVENT_ADAPTER,
    FAMILY_BY_TYPE,
    WITHDRAWN,
    Envelope,
    Family,
)

Reason = Literal[
    "malformed_json",
    "unknown_event_type",
    "wrong_topic",
    "missing_field",
    "invalid_value",
    "naive_timestamp",
    "unsupported_schema_version",
    "timestamp_out_of_range",
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]
# Dead-letter reasons decided by the pipeline beyond the contract (journey.ingest,
# journey.batch): a message refused for its size, its clock or its lateness against the
# watermark, or one the journey logic raised on; visibly, never dropped.
RefusalReason = Literal["future_timestamp", "too_late", "message_too_large", "processing_error", "wrong_key"]
REFUSAL_REASONS: tuple[RefusalReason, ...] = RefusalReason.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message is not a valid event: a reason code and a detail naming the field."""

    reason: Reason
    detail: str


def _field_path(loc: tuple[int | str, ...]) -> str:
    # The discriminated union puts the event type first in `loc`; the field is the rest.
    parts = [str(p) for p in loc]
    if parts and (parts[0] in FAMILY_BY_TYPE or parts[0] == WITHDRAWN):
        parts = parts[1:]
    return ".".join(parts) or "<event>"


def _verdict_from_errors(error: ValidationError) -> Rejected:
    errors = error.errors(include_url=False, include_context=True, include_input=False)
    first = errors[0]
    kind = first["type"]
    field = _field_path(first["loc"])
    if kind == "json_invalid":
        return Rejected("malformed_json", f"not valid JSON: {first['ctx'].get('error', first['msg'])}")
    if not first["loc"] and kind in ("dict_type", "model_type", "model_attributes_type"):
        return Rejected("malformed_json", "the message is not a JSON object")
    if kind == "union_tag_not_found":
        return Rejected("missing_field", "event_type: field required")
    if kind == "union_tag_invalid":
        return Rejected("unknown_event_type", f"event_type: {first['ctx']['tag']!r} is not an event type of contract v1")
    if kind == "missing":
        return Rejected("missing_field", f"{field}: field required")
    if field == "schema_version":
        return Rejected("unsupported_schema_version", f"schema_version: only version 1 is supported ({first['msg']})")
    if kind == "timestamp_out_of_range":
        return Rejected("timestamp_out_of_range", f"{field}: {first['msg']}")
    if kind == "timezone_aware":
        return Rejected("naive_timestamp", f"{field}: timestamp has no UTC offset")
    return Rejected("invalid_value", f"{field}: {first['msg']}")


def decode(
    raw: bytes, topic: str | None = None, topics: Mapping[Family, str] = DEFAULT_TOPICS
) -> Envelope | Rejected:
    """Validate ``raw`` as an event of contract v1 read from ``topic``.

    ``topic=None`` skips the topic check (an event file names no topic: the family
    comes from ``event_type``). ``topics`` maps each family to its topic name.
    """
    try:
        event: Envelope = EVENT_ADAPTER.validate_json(raw)
    except ValidationError as error:
        return _verdict_from_errors(error)
    except UnicodeDecodeError:
        return Rejected("malformed_json", "the message is not UTF-8")
    if topic is not None and topics[event.family] != topic:
        return Rejected(
            "wrong_topic",
            f"event_type: {event.event_type!r} belongs on {topics[event.family]!r}, not {topic!r}",  # type: ignore[attr-defined]
        )
    return event
