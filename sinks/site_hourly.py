"""Recompute ``site_hourly`` buckets from ``appointment_journeys FINAL``.

A bucket is (site_id, department, hour of scheduled_start). After appointment rows
are inserted, every bucket they touch is recomputed from scratch: the buckets of the
new rows AND the buckets those appointments were in before (a reschedule moves an
appointment to another hour; the old hour must lose it). A bucket that became empty
gets a row of zeros, so a dashboard never keeps showing a moved appointment. Where the
appointments were before comes from the writer's placement lookup (:mod:`sinks.placement`).

Recomputing is idempotent: the result depends only on the latest version of each
appointment, and ``computed_at`` (the ReplacingMergeTree version) is the server time
of the SELECT, so the newest computation, which saw every insert committed before
it, is the one that wins. How each column is computed is in the column comments
(``sinks/migrations/0002_site_hourly_comments.sql``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from clickhouse_connect.driver.client import Client

from schemas.timestamps import HOUR_MS
from sinks.migrate import quote_database
from sinks.placement import month_of

_CHUNK = 5_000  # buckets / ids per statement: keeps parameters well under HTTP limits


class Bucket(NamedTuple):
    site_id: str
    department: str
    hour: int  # epoch seconds of the start of the hour, UTC


def buckets_of_rows(
    site_ids: Sequence[str], departments: Sequence[str], starts_ms: Sequence[int | None]
) -> set[Bucket]:
    """Buckets of appointment rows given as columns (scheduled_start in epoch ms; NULL has no bucket)."""
    return {
        Bucket(site, department, start // HOUR_MS * 3600)
        for site, department, start in zip(site_ids, departments, starts_ms, strict=True)
        if start is not None
    }


def bucket_of(site_id: str, department: str, start_ms: int | None) -> Bucket | None:
    """The bucket of one appointment (None without a scheduled_start)."""
    return None if start_ms is None else Bucket(site_id, department, start_ms // HOUR_MS * 3600)


_RECOMPUTE = """
INSERT INTO {db}.site_hourly
SELECT
    k.site_id, k.department, k.hour, now64(6) AS computed_at,
    a.appointments, a.in_person, a.telehealth, a.arrivals, a.completed, a.no_shows,
    a.cancellations, a.late_cancellations, a.left_without_being_seen,
    a.lobby_wait_n, a.lobby_wait_sum_min, a.lobby_wait_p50_min, a.lobby_wait_p90_min,
    a.room_wait_n, a.room_wait_sum_min, a.room_wait_p50_min, a.room_wait_p90_min,
    a.provider_delay_n, a.provider_delay_sum_min,
    a.cycle_time_n, a.cycle_time_sum_min, a.cycle_time_p50_min,
    a.telehealth_connected, a.telehealth_abandoned, a.friction_count
FROM
(
    SELECT b.1 AS site_id, b.2 AS department, toDateTime(b.3, 'UTC') AS hour
    FROM (SELECT arrayJoin(arrayZip({{sites:Array(String)}}, {{deps:Array(String)}}, {{hours:Array(UInt32)}})) AS b)
) AS k
LEFT JOIN
(
    SELECT
        site_id,
        department,
        toStartOfHour(assumeNotNull(scheduled_start)) AS hour,
        toUInt32(count()) AS appointments,
        toUInt32(countIf(modality = 'in_person')) AS in_person,
        toUInt32(countIf(modality = 'telehealth')) AS telehealth,
        toUInt32(countIf(arrived_at IS NOT NULL OR patient_joined_at IS NOT NULL)) AS arrivals,
        toUInt32(countIf(status = 'completed')) AS completed,
        toUInt32(countIf(no_show = 1)) AS no_shows,
        toUInt32(countIf(status IN ('cancelled', 'late_cancelled'))) AS cancellations,
        toUInt32(countIf(late_cancelled = 1)) AS late_cancellations,
        toUInt32(countIf(left_without_being_seen_at IS NOT NULL)) AS left_without_being_seen,
        toUInt32(count(lobby_wait_min)) AS lobby_wait_n,
        ifNull(sum(lobby_wait_min), 0) AS lobby_wait_sum_min,
        quantileExactInclusive(0.5)(lobby_wait_min) AS lobby_wait_p50_min,
        quantileExactInclusive(0.9)(lobby_wait_min) AS lobby_wait_p90_min,
        toUInt32(count(room_wait_min)) AS room_wait_n,
        ifNull(sum(room_wait_min), 0) AS room_wait_sum_min,
        quantileExactInclusive(0.5)(room_wait_min) AS room_wait_p50_min,
        quantileExactInclusive(0.9)(room_wait_min) AS room_wait_p90_min,
        toUInt32(count(provider_start_delay_min)) AS provider_delay_n,
        ifNull(sum(provider_start_delay_min), 0) AS provider_delay_sum_min,
        toUInt32(count(cycle_time_min)) AS cycle_time_n,
        ifNull(sum(cycle_time_min), 0) AS cycle_time_sum_min,
        quantileExactInclusive(0.5)(cycle_time_min) AS cycle_time_p50_min,
        toUInt32(countIf(telehealth_connected = 1)) AS telehealth_connected,
        toUInt32(countIf(telehealth_abandoned = 1)) AS telehealth_abandoned,
        toUInt32(sum(friction_count)) AS friction_count
    FROM {db}.appointment_journeys FINAL
    -- Only the months of the buckets are read: the table is partitioned by month of
    -- scheduled_start and merged per partition (every partition is right on its own,
    -- sinks/placement.py), so the cost follows the batch, not the table's history.
    -- The other filters apply after FINAL (non-key columns; the setting below keeps it
    -- so on any server profile): only an appointment's latest version decides its bucket.
    WHERE toYYYYMM(ifNull(scheduled_start, first_event_at)) IN (SELECT arrayJoin({{months:Array(UInt32)}}))
      AND scheduled_start IS NOT NULL
      AND toUnixTimestamp(toStartOfHour(assumeNotNull(scheduled_start))) IN (SELECT arrayJoin({{hours:Array(UInt32)}}))
      AND site_id IN (SELECT arrayJoin({{sites:Array(String)}}))
    GROUP BY site_id, department, hour
) AS a
USING (site_id, department, hour)
SETTINGS join_use_nulls = 0, optimize_move_to_prewhere_if_final = 0, do_not_merge_across_partitions_select_final = 1
"""


def recompute(client: Client, buckets: Iterable[Bucket], database: str) -> int:
    """Rewrite the given buckets from ``appointment_journeys FINAL``; returns how many.

    A LEFT JOIN from the bucket list keeps buckets with no appointment left: their
    counts come out as 0 (``join_use_nulls = 0``) and their quantiles NULL.
    """
    ordered = sorted(set(buckets))
    sql = _RECOMPUTE.format(db=quote_database(database))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        client.command(
            sql,
            parameters={
                "sites": [b.site_id for b in chunk],
                "deps": [b.department for b in chunk],
                "hours": [b.hour for b in chunk],
                "months": sorted({month_of(b.hour * 1000) for b in chunk}),
            },
        )
    return len(ordered)
