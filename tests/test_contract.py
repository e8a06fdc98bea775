"""The wire contract (SPEC section 2) from real message bytes: what is accepted, what is rejected and why."""

from __future__ import annotations

import json

import pytest

from schemas.decode import REASONS, Rejected, decode
from schemas.eventfile import Route, route, topic_for
from schemas.events import DEFAULT_TOPICS, FAMILY_BY_TYPE, Envelope
from schemas.export import example_event

ALL_TYPES = sorted(FAMILY_BY_TYPE)


def as_bytes(event_type: str, /, drop: tuple[str, ...] = (), **overrides: object) -> bytes:
    event = example_event(event_type, **overrides)
    for name in drop:
        event.pop(name)
    return json.dumps(event).encode()


def test_the_contract_has_19_event_types_in_4_families() -> None:
    assert len(ALL_TYPES) == 19
    assert set(FAMILY_BY_TYPE.values()) == set(DEFAULT_TOPICS)


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_event_type_is_accepted_on_its_family_topic(event_type: str) -> None:
    raw = as_bytes(event_type)
    topic = DEFAULT_TOPICS[FAMILY_BY_TYPE[event_type]]
    event = decode(raw, topic=topic)
    assert isinstance(event, Envelope), event
    assert event.event_type == event_type  # type: ignore[attr-defined]
    assert event.family == FAMILY_BY_TYPE[event_type]
    assert event.occurred_at.utcoffset() is not None
    # Routing (used by the producer) agrees with the decoder.
    assert route(raw) == Route(FAMILY_BY_TYPE[event_type], b"a-000456")
    assert topic_for(raw) == topic


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_event_type_is_accepted_with_only_required_fields(event_type: str) -> None:
    optional = {"provider_id", "attributes", "reason", "room", "severity"}
    if event_type == "appointment.rescheduled":
        optional.add("duration_min")
    if event_type == "participant.left":
        optional.discard("reason")  # required there: normal or dropped
    event = example_event(event_type)
    raw = json.dumps({k: v for k, v in event.items() if k not in optional}).encode()
    assert isinstance(decode(raw), Envelope), decode(raw)


def test_hand_written_bytes_with_unicode_extra_fields_and_attributes_are_accepted() -> None:
    raw = (
        b'{ "event_id" : "hl7-0001", "event_type": "appointment.booked", "schema_version": 1,\n'
        b' "occurred_at": "2026-03-01T14:02:11.250Z", "source": "hl7-siu", "patient_id": "MRN-\xc3\xa9l\xc3\xa8ve",'
        b' "appointment_id": "SIU-77", "site_id": "s1", "department": "primary_care",'
        b' "scheduled_start": "2026-03-09T08:30:00+01:00", "duration_min": 20, "visit_type": "new_patient",'
        b' "modality": "telehealth", "attributes": {"hl7_msh10": "X"}, "some_future_field": true}'
    )
    event = decode(raw, topic="journey.scheduling")
    assert isinstance(event, Envelope), event
    assert event.patient_id == "MRN-élève"
    assert event.attributes == {"hl7_msh10": "X"}
    assert event.scheduled_start.isoformat() == "2026-03-09T08:30:00+01:00"  # type: ignore[attr-defined]


REJECTIONS: list[tuple[str, bytes, str | None, str, str]] = [
    # (case, raw bytes, topic, reason, text the detail must contain)
    ("truncated JSON", b'{"event_type": "patient.arrived"', None, "malformed_json", "not valid JSON"),
    ("empty message", b"", None, "malformed_json", "not valid JSON"),
    ("JSON array", b'[{"event_type": "patient.arrived"}]', None, "malformed_json", "not a JSON object"),
    ("not UTF-8", b'{"event_type": "patient.arrived", "source": "\xff\xfe"}', None, "malformed_json", ""),
    ("unknown event type", as_bytes("patient.arrived", event_type="patient.teleported"), None,
     "unknown_event_type", "patient.teleported"),
    ("event type of another contract", as_bytes("session.ended", event_type="Session.Ended"), None,
     "unknown_event_type", "event_type"),
    ("no event type", as_bytes("patient.arrived", drop=("event_type",)), None, "missing_field", "event_type"),
    ("booked on the check-in topic", as_bytes("appointment.booked"), "journey.checkin", "wrong_topic",
     "journey.scheduling"),
    ("wait event on the telehealth topic", as_bytes("wait.ended"), "journey.telehealth", "wrong_topic", "wait.ended"),
    ("missing family field duration_min", as_bytes("appointment.booked", drop=("duration_min",)), None,
     "missing_field", "duration_min"),
    ("missing family field outcome", as_bytes("wait.ended", drop=("outcome",)), None, "missing_field", "outcome"),
    ("missing family field role", as_bytes("participant.joined", drop=("role",)), None, "missing_field", "role"),
    ("missing envelope field site_id", as_bytes("patient.arrived", drop=("site_id",)), None, "missing_field",
     "site_id"),
    ("missing appointment_id", as_bytes("patient.roomed", drop=("appointment_id",)), None, "missing_field",
     "appointment_id"),
    ("bad enum modality", as_bytes("appointment.booked", modality="carrier_pigeon"), None, "invalid_value",
     "modality"),
    ("bad enum cancelled_by", as_bytes("appointment.cancelled", cancelled_by="insurer"), None, "invalid_value",
     "cancelled_by"),
    ("bad enum check-in channel", as_bytes("patient.checked_in", channel="sms"), None, "invalid_value", "channel"),
    ("bad enum leave reason", as_bytes("participant.left", reason="bored"), None, "invalid_value", "reason"),
    ("duration zero", as_bytes("appointment.booked", duration_min=0), None, "invalid_value", "duration_min"),
    ("duration as a string", as_bytes("appointment.booked", duration_min="30"), None, "invalid_value",
     "duration_min"),
    ("negative estimate", as_bytes("wait.estimate_published", estimated_wait_min=-1), None, "invalid_value",
     "estimated_wait_min"),
    ("severity 4", as_bytes("connection.issue", severity=4), None, "invalid_value", "severity"),
    ("empty patient_id", as_bytes("patient.arrived", patient_id=""), None, "invalid_value", "patient_id"),
    ("appointment_id too long", as_bytes("patient.arrived", appointment_id="a" * 65), None, "invalid_value",
     "appointment_id"),
    ("attributes not an object", as_bytes("patient.arrived", attributes=[1, 2]), None, "invalid_value",
     "attributes"),
    ("unparseable timestamp", as_bytes("patient.arrived", occurred_at="yesterday"), None, "invalid_value",
     "occurred_at"),
    ("naive occurred_at", as_bytes("patient.arrived", occurred_at="2026-03-02T09:55:00"), None, "naive_timestamp",
     "occurred_at"),
    ("naive scheduled_start", as_bytes("appointment.rescheduled", scheduled_start="2026-03-03T10:00:00"), None,
     "naive_timestamp", "scheduled_start"),
    ("occurred_at in 1850", as_bytes("patient.arrived", occurred_at="1850-03-02T09:55:00Z"), None,
     "timestamp_out_of_range", "occurred_at"),
    ("scheduled_start in year 2300", as_bytes("appointment.rescheduled", scheduled_start="2300-01-01T00:00:00Z"), None,
     "timestamp_out_of_range", "scheduled_start"),
    ("schema version 2", as_bytes("patient.arrived", schema_version=2), None, "unsupported_schema_version",
     "schema_version"),
    ("schema version as a string", as_bytes("patient.arrived", schema_version="1"), None,
     "unsupported_schema_version", "schema_version"),
]


@pytest.mark.parametrize(("raw", "topic", "reason", "detail"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejections_give_the_reason_and_name_the_field(raw: bytes, topic: str | None, reason: str, detail: str) -> None:
    verdict = decode(raw, topic=topic)
    assert isinstance(verdict, Rejected), verdict
    assert verdict.reason == reason, verdict
    assert detail in verdict.detail, verdict


def test_every_rejection_reason_is_covered() -> None:
    assert {r[3] for r in REJECTIONS} == set(REASONS)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_type": "patient.arrived"', "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'{"appointment_id": "a1"}', "missing_field"),
        (b'{"event_type": "patient.teleported", "appointment_id": "a1"}', "unknown_event_type"),
        (b'{"event_type": 7}', "unknown_event_type"),
        (b'{"event_type": "x", "source": "\xff"}', "malformed_json"),
    ],
)
def test_unroutable_bytes_get_the_same_reason_as_the_decoder(raw: bytes, reason: str) -> None:
    verdict = route(raw)
    assert isinstance(verdict, Rejected)
    assert verdict.reason == reason
    assert decode(raw).reason == reason  # type: ignore[union-attr]


def test_routable_but_invalid_events_are_routed_for_the_pipeline_to_dead_letter() -> None:
    # A missing field is the pipeline's verdict, with the topic/partition/offset it read.
    raw = as_bytes("wait.ended", drop=("outcome",))
    assert route(raw) == Route("waits", b"a-000456")
    assert route(b'{"event_type": "wait.ended", "appointment_id": 5}') == Route("waits", None)
