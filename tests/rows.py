"""Realistic rows for every sink table, as the stream workers put them on the output topic.

For tests and for loading dashboards without Kafka::

    from tests.rows import journey_row, sample_bundle
    RowWriter(client, "journeys").write([sample_bundle("A-1")])

Every factory takes keyword overrides for any column. Times are epoch milliseconds
(UTC); ``T0`` is 2026-01-05 10:00 UTC, a Monday.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from schemas.timestamps import DAY_MS, MINUTE_MS

T0 = 1_767_607_200_000  # 2026-01-05T10:00:00Z

PATIENT_KEY = "5f" * 32  # hex HMAC-SHA256 shape, never a real identifier

CLICKHOUSE_URL_ENV = "CLICKHOUSE_URL"


def clickhouse_test_dsn(chdb_dir: Path) -> str:
    """The ClickHouse the tests use: ``$CLICKHOUSE_URL`` (an http(s):// server) if set, else chdb here.

    Run the sink tests against a real server with, e.g.::

        CLICKHOUSE_URL=http://default:@127.0.0.1:8123 pytest tests/test_sink*.py

    Each test works in its own database (:func:`unique_database`), dropped afterwards.
    """
    return os.environ.get(CLICKHOUSE_URL_ENV) or f"chdb://{chdb_dir}"


def clickhouse_backend() -> str:
    """``"server"`` when ``$CLICKHOUSE_URL`` is set, else ``"chdb"``: the id the sink tests are parametrized with."""
    return "server" if os.environ.get(CLICKHOUSE_URL_ENV) else "chdb"


def unique_database(prefix: str = "sinktest") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _merge(row: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(row)
    if unknown:
        raise KeyError(f"not a column: {sorted(unknown)}")
    row.update(overrides)
    return row


def event_row(event_id: str = "e-1", **overrides: Any) -> dict[str, Any]:
    return _merge(
        {
            "source": "simulator",
            "event_id": event_id,
            "event_type": "patient.arrived",
            "family": "checkin",
            "occurred_at": T0 - 10 * MINUTE_MS,
            "appointment_id": "A-1",
            "patient_key": PATIENT_KEY,
            "site_id": "north",
            "department": "cardiology",
            "provider_id": "dr-7",
            "fields": '{"channel":"kiosk"}',
            "topic": "journey.checkin",
            "partition": 2,
            "offset": 41,
            "ingested_at": T0,
            "copy_rank": 1,
        },
        overrides,
    )


def deadletter_row(offset: int = 7, **overrides: Any) -> dict[str, Any]:
    return _merge(
        {
            "topic": "journey.checkin",
            "partition": 1,
            "offset": offset,
            "reason": "missing_field",
            "detail": "occurred_at",
            "received_at": T0,
        },
        overrides,
    )


def journey_row(appointment_id: str = "A-1", version: int = 1, **overrides: Any) -> dict[str, Any]:
    """A completed in-person visit scheduled at ``T0`` (override ``scheduled_start`` to move it)."""
    scheduled = overrides.get("scheduled_start", T0)
    start = scheduled if isinstance(scheduled, int) else T0  # the other times stay put when it is NULL
    return _merge(
        {
            "appointment_id": appointment_id,
            "version": version,
            "is_deleted": 0,
            "patient_key": PATIENT_KEY,
            "site_id": "north",
            "department": "cardiology",
            "provider_id": "dr-7",
            "modality": "in_person",
            "visit_type": "follow_up",
            "scheduled_start": start,
            "duration_min": 30,
            "booked_at": start - 14 * DAY_MS,
            "status": "completed",
            "lead_time_days": 14.0,
            "reschedule_count": 0,
            "late_cancelled": 0,
            "cancelled_by": None,
            "cancelled_at": None,
            "no_show": 0,
            "arrived_at": start - 10 * MINUTE_MS,
            "checked_in_at": start - 7 * MINUTE_MS,
            "checkin_channel": "kiosk",
            "roomed_at": start + 15 * MINUTE_MS,
            "provider_started_at": start + 21 * MINUTE_MS,
            "checked_out_at": start + 55 * MINUTE_MS,
            "left_without_being_seen_at": None,
            "arrival_offset_min": -10.0,
            "arrival_to_checkin_min": 3.0,
            "lobby_wait_min": 22.0,
            "room_wait_min": 6.0,
            "checkin_to_provider_min": 28.0,
            "provider_start_delay_min": 21.0,
            "cycle_time_min": 65.0,
            "queue_wait_min": {"lab": 12.5},
            "queue_abandoned": {"pharmacy": 1},
            "wait_estimate_error_min": 2.5,
            "patient_joined_at": None,
            "provider_joined_at": None,
            "patient_join_offset_min": None,
            "provider_join_offset_min": None,
            "virtual_wait_min": None,
            "telehealth_connected": None,
            "telehealth_abandoned": None,
            "drop_count": 0,
            "connection_issue_count": 0,
            "reminders_sent": 2,
            "friction_count": 2,
            "friction_rules": ["lobby_wait", "provider_start_delay"],
            "event_count": 11,
            "first_event_at": start - 14 * DAY_MS,
            "last_event_at": start + 55 * MINUTE_MS,
            "is_final": 1,
        },
        overrides,
    )


def telehealth_journey_row(appointment_id: str = "T-1", version: int = 1, **overrides: Any) -> dict[str, Any]:
    """A telehealth visit where the patient waited 12 minutes for the provider."""
    start = overrides.get("scheduled_start", T0)
    row = journey_row(appointment_id, version, scheduled_start=start)
    row.update(
        modality="telehealth",
        arrived_at=None,
        checked_in_at=None,
        checkin_channel=None,
        roomed_at=None,
        provider_started_at=None,
        checked_out_at=None,
        arrival_offset_min=None,
        arrival_to_checkin_min=None,
        lobby_wait_min=None,
        room_wait_min=None,
        checkin_to_provider_min=None,
        provider_start_delay_min=None,
        cycle_time_min=None,
        queue_wait_min={},
        queue_abandoned={},
        wait_estimate_error_min=None,
        patient_joined_at=start - 2 * MINUTE_MS,
        provider_joined_at=start + 10 * MINUTE_MS,
        patient_join_offset_min=-2.0,
        provider_join_offset_min=10.0,
        virtual_wait_min=12.0,
        telehealth_connected=1,
        telehealth_abandoned=0,
        drop_count=1,
        connection_issue_count=3,
        friction_count=1,
        friction_rules=["virtual_wait"],
    )
    return _merge(row, overrides)


def stage_row(appointment_id: str = "A-1", stage: str = "lobby", version: int = 1, **overrides: Any) -> dict[str, Any]:
    return _merge(
        {
            "appointment_id": appointment_id,
            "stage": stage,
            "version": version,
            "is_deleted": 0,
            "site_id": "north",
            "department": "cardiology",
            "provider_id": "dr-7",
            "modality": "in_person",
            "started_at": T0 - 7 * MINUTE_MS,
            "ended_at": T0 + 15 * MINUTE_MS,
            "minutes": 22.0,
        },
        overrides,
    )


def queue_wait_row(
    appointment_id: str = "A-1", queue: str = "lab", version: int = 1, **overrides: Any
) -> dict[str, Any]:
    return _merge(
        {
            "appointment_id": appointment_id,
            "queue": queue,
            "wait_key": "simulator/w-1",
            "version": version,
            "is_deleted": 0,
            "site_id": "north",
            "department": "cardiology",
            "provider_id": "dr-7",
            "started_at": T0 + 60 * MINUTE_MS,
            "ended_at": T0 + 72 * MINUTE_MS + 30_000,
            "outcome": "called",
            "wait_min": 12.5,
            "estimated_wait_min": 10.0,
            "estimate_error_min": 2.5,
        },
        overrides,
    )


def friction_row(
    appointment_id: str = "A-1", rule: str = "lobby_wait", version: int = 1, **overrides: Any
) -> dict[str, Any]:
    return _merge(
        {
            "appointment_id": appointment_id,
            "rule": rule,
            "hit_key": "",
            "version": version,
            "is_deleted": 0,
            "severity": "medium",
            "site_id": "north",
            "department": "cardiology",
            "provider_id": "dr-7",
            "modality": "in_person",
            "occurred_at": T0 + 15 * MINUTE_MS,
            "scheduled_start": T0,
            "value": 22.0,
            "threshold": 20.0,
        },
        overrides,
    )


def patient_row(patient_key: str = PATIENT_KEY, version: int = 1, **overrides: Any) -> dict[str, Any]:
    return _merge(
        {
            "patient_key": patient_key,
            "version": version,
            "appointments": 3,
            "visits_completed": 2,
            "no_shows": 1,
            "late_cancellations": 0,
            "first_seen_at": T0 - 60 * DAY_MS,
            "last_completed_visit_at": T0,
            "days_since_previous_completed_visit": 45.0,
            "friction_visits": 1,
            "friction_visits_returned_90d": 0,
            "friction_visits_decided_90d": 0,
            "clean_visits": 1,
            "clean_visits_returned_90d": 1,
            "clean_visits_decided_90d": 1,
        },
        overrides,
    )


def patient_visit_row(appointment_id: str = "A-1", version: int = 1, **overrides: Any) -> dict[str, Any]:
    return _merge(
        {
            "patient_key": PATIENT_KEY,
            "appointment_id": appointment_id,
            "version": version,
            "is_deleted": 0,
            "site_id": "north",
            "department": "cardiology",
            "provider_id": "dr-7",
            "visit_type": "follow_up",
            "visit_at": T0,
            "had_friction": 1,
            "friction_rules": ["lobby_wait", "provider_start_delay"],
            "returned_within_90d": None,
            "days_to_next_visit": None,
            "days_to_return": None,
        },
        overrides,
    )


def marker_row(marker_id: str = "m-1", input_partition: int = 0, **overrides: Any) -> dict[str, Any]:
    """As a worker sends it: ``output_partition`` is added by the writer from the message
    (and ``written_at`` when missing); both may still be given here."""
    row: dict[str, Any] = {
        "marker_id": marker_id,
        "stage": "journey",
        "input_topic": "journey.checkin",
        "input_partition": input_partition,
        "watermark": T0 + DAY_MS,
    }
    extra = {k: overrides.pop(k) for k in ("output_partition", "written_at") if k in overrides}
    return _merge(row, overrides) | extra


def sample_bundle(
    appointment_id: str = "A-1", version: int = 1, **journey_overrides: Any
) -> dict[str, list[dict[str, Any]]]:
    """One appointment's worth of rows, as one output message carries it."""
    return {
        "appointment_journeys": [journey_row(appointment_id, version, **journey_overrides)],
        "stage_intervals": [
            stage_row(appointment_id, "lobby", version),
            stage_row(
                appointment_id, "room", version, started_at=T0 + 15 * MINUTE_MS, ended_at=T0 + 21 * MINUTE_MS, minutes=6.0
            ),
        ],
        "queue_waits": [queue_wait_row(appointment_id, "lab", version)],
        "friction_events": [
            friction_row(appointment_id, "lobby_wait", version),
            friction_row(
                appointment_id,
                "provider_start_delay",
                version,
                value=21.0,
                threshold=15.0,
                occurred_at=T0 + 21 * MINUTE_MS,
            ),
        ],
        "events": [event_row(f"{appointment_id}-arrived", appointment_id=appointment_id)],
    }
