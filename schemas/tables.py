"""What lands in ClickHouse (SPEC section 4): every table's columns, key and version.

The one home of the row schema. The migrations (``sinks/migrations``) create these
tables and a test checks the migrated columns against this list; the journey core
builds its rows with these column names and its tombstones from :func:`tombstone`;
the tests check every row the core emits against it.

Each column comes with its *empty* value: what a tombstone (a row that deletes a key
the previous version emitted, ReplacingMergeTree ``is_deleted``) carries in it.

>>> TABLES["stage_intervals"].key
('appointment_id', 'stage')
>>> row = tombstone("stage_intervals", version=8, appointment_id="a1", stage="lobby", site_id="s1")
>>> row["is_deleted"], row["version"], row["started_at"], row["ended_at"], row["site_id"]
(1, 8, 0, None, 's1')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

EMPTY_MAP: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]  # ORDER BY: what identifies a row (ReplacingMergeTree keeps one per key)
    version: str  # the column whose largest value wins ("": none, the last written)
    columns: tuple[tuple[str, Any], ...]  # (name, empty value), in table order
    # PARTITION BY toYYYYMM of the first of these time columns that is not NULL (empty:
    # not partitioned by a row time). A key whose time moves to another month leaves a
    # row behind in the old partition: the writer puts an is_deleted tombstone beside it
    # (sinks/placement.py), so each partition can be read FINAL on its own.
    partition_by: tuple[str, ...] = ()
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(name for name, _ in self.columns))

    @property
    def deletable(self) -> bool:
        return "is_deleted" in self.names

    @property
    def partition_key(self) -> str:
        """The PARTITION BY expression as ClickHouse reports it (``system.tables.partition_key``).

        >>> TABLES["appointment_journeys"].partition_key
        'toYYYYMM(ifNull(scheduled_start, first_event_at))'
        """
        if not self.partition_by:
            return ""
        first, *rest = self.partition_by
        return f"toYYYYMM({f'ifNull({first}, {rest[0]})' if rest else first})"


def tombstone(table: str, version: int, **known: Any) -> dict[str, Any]:
    """A row deleting the key given in ``known`` at ``version``; columns not given are empty."""
    empty, mutable = _EMPTY_ROWS[table]
    row = dict(empty)
    for name in mutable:  # a fresh list or dict each time: a caller may fill it
        row[name] = list(empty[name]) if isinstance(empty[name], tuple) else dict(empty[name])
    row.update(known, version=version, is_deleted=1)
    return row


TABLES: dict[str, Table] = {table.name: table for table in (
    Table(
        "events",
        key=("source", "event_id"),
        version="copy_rank",
        partition_by=("occurred_at",),
        columns=(
            ("source", ""),
            ("event_id", ""),
            ("event_type", ""),
            ("family", ""),
            ("occurred_at", 0),
            ("appointment_id", ""),
            ("patient_key", ""),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("fields", ""),
            ("topic", ""),
            ("partition", 0),
            ("offset", 0),
            ("ingested_at", 0),
            ("copy_rank", 0),
        ),
    ),
    Table(
        "deadletters",
        key=("topic", "partition", "offset"),
        version="received_at",
        columns=(
            ("topic", ""),
            ("partition", 0),
            ("offset", 0),
            ("reason", ""),
            ("detail", ""),
            ("received_at", 0),
        ),
    ),
    Table(
        "appointment_journeys",
        key=("appointment_id",),
        version="version",
        # A journey without a scheduled_start yet (its booking not seen) is placed by its first event.
        partition_by=("scheduled_start", "first_event_at"),
        columns=(
            ("appointment_id", ""),
            ("version", 0),
            ("is_deleted", 0),
            ("patient_key", ""),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("modality", None),
            ("visit_type", None),
            ("scheduled_start", None),
            ("duration_min", None),
            ("booked_at", None),
            ("status", ""),
            ("lead_time_days", None),
            ("reschedule_count", 0),
            ("late_cancelled", None),
            ("cancelled_by", None),
            ("cancelled_at", None),
            ("no_show", 0),
            ("arrived_at", None),
            ("checked_in_at", None),
            ("checkin_channel", None),
            ("roomed_at", None),
            ("provider_started_at", None),
            ("checked_out_at", None),
            ("left_without_being_seen_at", None),
            ("arrival_offset_min", None),
            ("arrival_to_checkin_min", None),
            ("lobby_wait_min", None),
            ("room_wait_min", None),
            ("checkin_to_provider_min", None),
            ("provider_start_delay_min", None),
            ("cycle_time_min", None),
            ("queue_wait_min", EMPTY_MAP),
            ("queue_abandoned", EMPTY_MAP),
            ("wait_estimate_error_min", None),
            ("patient_joined_at", None),
            ("provider_joined_at", None),
            ("patient_join_offset_min", None),
            ("provider_join_offset_min", None),
            ("virtual_wait_min", None),
            ("telehealth_connected", None),
            ("telehealth_abandoned", None),
            ("drop_count", 0),
            ("connection_issue_count", 0),
            ("reminders_sent", 0),
            ("friction_count", 0),
            ("friction_rules", ()),
            ("event_count", 0),
            ("first_event_at", 0),
            ("last_event_at", 0),
            ("is_final", 0),
        ),
    ),
    Table(
        "stage_intervals",
        key=("appointment_id", "stage"),
        version="version",
        partition_by=("started_at",),
        columns=(
            ("appointment_id", ""),
            ("stage", ""),
            ("version", 0),
            ("is_deleted", 0),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("modality", None),
            ("started_at", 0),
            ("ended_at", None),
            ("minutes", None),
        ),
    ),
    Table(
        "queue_waits",
        key=("appointment_id", "queue", "wait_key"),
        version="version",
        partition_by=("started_at",),
        columns=(
            ("appointment_id", ""),
            ("queue", ""),
            ("wait_key", ""),
            ("version", 0),
            ("is_deleted", 0),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("started_at", 0),
            ("ended_at", None),
            ("outcome", None),
            ("wait_min", None),
            ("estimated_wait_min", None),
            ("estimate_error_min", None),
        ),
    ),
    Table(
        "friction_events",
        key=("appointment_id", "rule", "hit_key"),
        version="version",
        partition_by=("occurred_at",),
        columns=(
            ("appointment_id", ""),
            ("rule", ""),
            ("hit_key", ""),
            ("version", 0),
            ("is_deleted", 0),
            ("severity", ""),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("modality", None),
            ("occurred_at", 0),
            ("scheduled_start", None),
            ("value", 0.0),
            ("threshold", 0.0),
        ),
    ),
    Table(
        "patient_journeys",
        key=("patient_key",),
        version="version",
        columns=(
            ("patient_key", ""),
            ("version", 0),
            ("appointments", 0),
            ("visits_completed", 0),
            ("no_shows", 0),
            ("late_cancellations", 0),
            ("first_seen_at", None),
            ("last_completed_visit_at", None),
            ("days_since_previous_completed_visit", None),
            ("friction_visits", 0),
            ("friction_visits_returned_90d", 0),
            ("friction_visits_decided_90d", 0),
            ("clean_visits", 0),
            ("clean_visits_returned_90d", 0),
            ("clean_visits_decided_90d", 0),
        ),
    ),
    Table(
        "patient_visits",
        key=("patient_key", "appointment_id"),
        version="version",
        partition_by=("visit_at",),
        columns=(
            ("patient_key", ""),
            ("appointment_id", ""),
            ("version", 0),
            ("is_deleted", 0),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("visit_type", ""),
            ("visit_at", 0),
            ("had_friction", 0),
            ("friction_rules", ()),
            ("returned_within_90d", None),
            ("days_to_next_visit", None),
            ("days_to_return", None),
        ),
    ),
    Table(
        "site_hourly",
        key=("site_id", "department", "hour"),
        version="computed_at",
        partition_by=("hour",),
        columns=(
            ("site_id", ""),
            ("department", ""),
            ("hour", 0),
            ("computed_at", 0),
            ("appointments", 0),
            ("in_person", 0),
            ("telehealth", 0),
            ("arrivals", 0),
            ("completed", 0),
            ("no_shows", 0),
            ("cancellations", 0),
            ("late_cancellations", 0),
            ("left_without_being_seen", 0),
            ("lobby_wait_n", 0),
            ("lobby_wait_sum_min", 0.0),
            ("lobby_wait_p50_min", None),
            ("lobby_wait_p90_min", None),
            ("room_wait_n", 0),
            ("room_wait_sum_min", 0.0),
            ("room_wait_p50_min", None),
            ("room_wait_p90_min", None),
            ("provider_delay_n", 0),
            ("provider_delay_sum_min", 0.0),
            ("cycle_time_n", 0),
            ("cycle_time_sum_min", 0.0),
            ("cycle_time_p50_min", None),
            ("telehealth_connected", 0),
            ("telehealth_abandoned", 0),
            ("friction_count", 0),
        ),
    ),
    Table(
        # Kept by a materialized view of appointment_journeys (migration 0006): the dashboards' variables.
        "journey_dimensions",
        key=("site_id", "department", "provider_id"),
        version="",
        columns=(("site_id", ""), ("department", ""), ("provider_id", "")),
    ),
    Table(
        # Kept by a materialized view of events (migration 0006): "Connection issues by kind".
        "connection_issues",
        key=("source", "event_id"),
        version="copy_rank",
        partition_by=("occurred_at",),
        columns=(
            ("source", ""),
            ("event_id", ""),
            ("occurred_at", 0),
            ("appointment_id", ""),
            ("site_id", ""),
            ("department", ""),
            ("provider_id", None),
            ("kind", ""),
            ("role", ""),
            ("copy_rank", 0),
        ),
    ),
    Table(
        # The writer's own: where each key of a month-partitioned table has its newest row (sinks/placement.py).
        "row_placements",
        key=("lookup", "table", "key"),
        version="version",
        columns=(
            ("lookup", ""),
            ("table", ""),
            ("key", ()),
            ("version", 0),
            ("is_deleted", 0),
            ("placed_at", None),
            ("placed_at_else", None),
            ("site_id", ""),
            ("department", ""),
        ),
    ),
    Table(
        "pipeline_markers",
        key=("marker_id", "stage", "input_topic", "input_partition", "output_partition"),
        version="written_at",
        columns=(
            ("marker_id", ""),
            ("stage", ""),
            ("input_topic", ""),
            ("input_partition", 0),
            ("output_partition", 0),
            ("watermark", None),
            ("written_at", 0),
        ),
    ),
    Table(
        "rejected_rows",
        key=("output_topic", "output_partition", "output_offset", "table", "row_index"),
        version="rejected_at",
        columns=(
            ("table", ""),
            ("reason", ""),
            ("row", ""),
            ("row_truncated", 0),
            ("row_bytes", 0),
            ("output_topic", ""),
            ("output_partition", 0),
            ("output_offset", 0),
            ("row_index", 0),
            ("rejected_at", 0),
        ),
    ),
)}

# Per table, its empty row and the columns whose empty value is a container (copied per
# tombstone): the writer makes thousands of tombstones per batch.
_EMPTY_ROWS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    name: (dict(table.columns),
           tuple(column for column, empty in table.columns if isinstance(empty, tuple | Mapping)))
    for name, table in TABLES.items()
}
