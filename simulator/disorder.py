"""Delivery: when each line reaches the broker, and which lines arrive broken.

Every event gets a delivery time (its occurred_at); some are held back minutes (out
of order) or hours (late), some are delivered twice (the very same
bytes), and for some a corrupted extra line is delivered near them. Output order is
delivery order. These draws use their own random streams, so the valid events and the
truth of a seed do not depend on the disorder knobs.

Invalid lines keep the original event's ``event_id``: a pipeline that deduplicates
before validating would drop the valid twin, which is exactly the bug this catches.

>>> import random
>>> from schemas.decode import decode
>>> event = {"event_id": "e1", "event_type": "patient.checked_in", "schema_version": 1,
...          "occurred_at": "2026-03-02T09:55:00.123-05:00", "source": "kiosk", "patient_id": "p1",
...          "appointment_id": "a1", "site_id": "s1", "department": "cardiology", "channel": "kiosk"}
>>> rng = random.Random(1)
>>> [decode(corrupt(event, reason, rng)).reason == reason for reason in INVALID_REASONS]
[True, True, True, True, True, True]
"""

from __future__ import annotations

import random
import re
from typing import Any

import orjson

from schemas.decode import Reason
from schemas.timestamps import HOUR_MS, MINUTE_MS

INVALID_REASONS: tuple[Reason, ...] = (
    "malformed_json",
    "unknown_event_type",
    "missing_field",
    "invalid_value",
    "naive_timestamp",
    "unsupported_schema_version",
)

UNKNOWN_TYPES = (
    "appointment.confirmed",
    "appointment.waitlisted",
    "patient.vitals_recorded",
    "provider.paused",
    "wait.position_changed",
    "session.recording_started",
)

# Fields with a closed set of values, per event type, and a plausible wrong value.
BAD_ENUMS: dict[str, tuple[str, str]] = {
    "appointment.booked": ("modality", "video"),
    "appointment.cancelled": ("cancelled_by", "insurer"),
    "appointment.reminder_sent": ("channel", "fax"),
    "patient.checked_in": ("channel", "valet"),
    "wait.ended": ("outcome", "transferred"),
    "participant.joined": ("role", "interpreter"),
    "participant.left": ("reason", "kicked"),
    "connection.issue": ("kind", "bluetooth"),
}

_OFFSET = re.compile(r"(Z|[+-]\d\d:\d\d)$")


def corrupt(event: dict[str, Any], reason: Reason, rng: random.Random) -> bytes:
    """A damaged copy of ``event`` that :func:`schemas.decode.decode` rejects with ``reason``."""
    broken = dict(event)
    if reason == "malformed_json":
        data = orjson.dumps(event)
        style = rng.random()
        if style < 0.5:
            return data[: rng.randint(1, len(data) - 1)]  # cut off mid-message
        if style < 0.8:
            return data + b"}"  # trailing garbage
        # A raw HL7 message that leaked onto the JSON feed.
        return f"MSH|^~\\&|CADENCE|{event['site_id']}|JOURNEYS|ANALYTICS|||SIU^S12|{event['event_id']}|P|2.5".encode()
    if reason == "unknown_event_type":
        broken["event_type"] = rng.choice(UNKNOWN_TYPES)
    elif reason == "missing_field":
        required = ["event_id", "event_type", "occurred_at", "source", "patient_id", "appointment_id", "site_id", "department"]
        family_field = next((f for f in ("scheduled_start", "channel", "queue", "role", "cancelled_by") if f in event), None)
        if family_field is not None and rng.random() < 0.4:
            del broken[family_field]
        else:
            del broken[rng.choice(required)]
    elif reason == "invalid_value":
        if event["event_type"] in BAD_ENUMS:
            field, value = BAD_ENUMS[event["event_type"]]
            broken[field] = value
        else:
            # No enum on this type: an empty identifier is just as invalid.
            broken[rng.choice(("patient_id", "appointment_id", "site_id"))] = ""
    elif reason == "naive_timestamp":
        broken["occurred_at"] = _OFFSET.sub("", event["occurred_at"])
    elif reason == "unsupported_schema_version":
        broken["schema_version"] = rng.choice((2, 2, 3, 0, "1"))
    return orjson.dumps(broken)


class Delivery:
    """Draws delivery delays, duplicates and corrupted companions for each event."""

    def __init__(self, seed: int, duplicate: float, out_of_order: float, late: float, invalid: float) -> None:
        self.rng = random.Random(f"delivery:{seed}")
        self.bad = random.Random(f"invalid:{seed}")
        self.duplicate, self.out_of_order, self.late, self.invalid = duplicate, out_of_order, late, invalid

    def deliver_at(self, occurred_ms: int) -> int:
        """When the event reaches the broker: at once, unless held back by a disorder knob.

        No latency jitter otherwise, so with every knob at 0 the output is exactly in
        ``occurred_at`` order (ties in generation order).
        """
        rng = self.rng
        draw = rng.random()
        if draw < self.late:
            return occurred_ms + rng.randint(HOUR_MS, 12 * HOUR_MS)
        if draw < self.late + self.out_of_order:
            return occurred_ms + rng.randint(MINUTE_MS, 20 * MINUTE_MS)
        return occurred_ms

    def resend_at(self, delivered_ms: int) -> int | None:
        """When a verbatim re-send of the event arrives (None: it is sent once)."""
        rng = self.rng
        if rng.random() >= self.duplicate:
            return None
        if rng.random() < 0.1:
            return delivered_ms + rng.randint(HOUR_MS, 6 * HOUR_MS)  # a replayed batch, much later
        return delivered_ms + rng.randint(500, 10 * MINUTE_MS)  # a producer retry

    def broken(self, event: dict[str, Any], delivered_ms: int) -> tuple[int, bytes, Reason] | None:
        """A corrupted companion line for ``event``, if one is injected."""
        bad = self.bad
        if bad.random() >= self.invalid:
            return None
        reason = bad.choice(INVALID_REASONS)
        return delivered_ms + bad.randint(-1000, 30_000), corrupt(event, reason, bad), reason
