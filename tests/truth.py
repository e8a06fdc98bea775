"""Compare what landed in ClickHouse with the simulator's truth, metric by metric."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

JOURNEY_METRICS = (
    "status", "lead_time_days", "reschedule_count", "late_cancelled", "no_show", "arrival_offset_min",
    "arrival_to_checkin_min", "lobby_wait_min", "room_wait_min", "checkin_to_provider_min",
    "provider_start_delay_min", "cycle_time_min", "queue_wait_min", "queue_abandoned", "wait_estimate_error_min",
    "patient_join_offset_min", "provider_join_offset_min", "virtual_wait_min", "telehealth_connected",
    "telehealth_abandoned", "drop_count", "connection_issue_count", "reminders_sent", "is_final",
    "site_id", "department", "provider_id", "modality", "visit_type",
)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool):
        expected = int(expected)
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(expected, actual, rel_tol=1e-12, abs_tol=1e-9)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(_same(v, actual[k]) for k, v in expected.items())
    return expected == actual


def journey_mismatches(truth: dict[str, Any], rows: dict[str, dict[str, Any]]) -> tuple[Counter[str], dict[str, Any]]:
    """Per metric, how many appointments differ from the truth (and one example of each)."""
    mismatches: Counter[str] = Counter()
    examples: dict[str, Any] = {}
    for appointment_id, expected in truth.items():
        row = rows.get(appointment_id)
        if row is None:
            mismatches["missing appointment"] += 1
            examples.setdefault("missing appointment", appointment_id)
            continue
        for metric in JOURNEY_METRICS:
            if not _same(getattr(expected, metric), row[metric]):
                mismatches[metric] += 1
                examples.setdefault(metric, (appointment_id, getattr(expected, metric), row[metric]))
    extra = set(rows) - set(truth)
    if extra:
        mismatches["unexpected appointment"] = len(extra)
    return mismatches, examples


def clickhouse_journeys(client: Any, database: str) -> dict[str, dict[str, Any]]:
    result = client.query(f"SELECT * FROM {database}.appointment_journeys FINAL")
    return {row["appointment_id"]: row for row in result.named_results()}
