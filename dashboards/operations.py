"""Dashboard 1, "Operations today": where patients wait right now and which clinics run late.

For clinic managers during the day: arrivals, who is waiting at the end of the range
(``$__toTime``, which is "now" on a live dashboard and the end of the day on a past
one), lobby and room waits by site (median and p90), providers running late, IHI
cycle time and a live feed of friction events. Refreshes every 10 seconds.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat

from dashboards.panels import (
    bar_panel,
    journeys_dashboard,
    sql,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.rules import MEASURED, RULE_LABEL, RULE_LIMIT

UID = "journeys-operations"

# Stages in which a patient is waiting (not being seen): SPEC stage intervals.
WAITING_STAGES = "('arrival_to_checkin', 'lobby', 'room', 'virtual_wait')"

# Journeys past their waiting stages at ($__toTime): an interval still open in the table
# (its closing event missing or not yet written) must not count as a patient waiting.
GONE = (
    "SELECT appointment_id FROM appointment_journeys FINAL"
    " WHERE scheduled_start > ($__toTime) - INTERVAL 2 DAY"
    " AND (checked_out_at <= ($__toTime) OR left_without_being_seen_at <= ($__toTime))"
)
SEEN_OR_GONE = GONE.replace(
    " AND (", " AND (provider_started_at <= ($__toTime) OR provider_joined_at <= ($__toTime) OR ", 1
)

# Journeys whose arrival or check-out can lie in the range: they are within a day of their
# scheduled start (their first event when none is booked yet). On the journeys' own month
# partition key, so FINAL reads only the months of the range, where a filter on
# arrived_at or checked_out_at alone reads every month (issue 17: 0.6-0.9 s on 10 M journeys).
NEAR_THE_RANGE = (
    "ifNull(scheduled_start, first_event_at) >= ($__fromTime) - INTERVAL 1 DAY"
    " AND ifNull(scheduled_start, first_event_at) <= ($__toTime) + INTERVAL 1 DAY"
)

WAIT_THRESHOLDS: list[tuple[float | None, str]] = [(None, "green"), (10, "yellow"), (20, "red")]  # minutes; lobby rule is > 20

# Severity reads as alarm: high red, medium orange, low yellow (bars and the feed alike).
SEVERITY_COLORS = {"high": "red", "medium": "orange", "low": "yellow"}



def _wait_stat(title: str, column: str, level: float, rule: str, width: int = 3) -> stat.Panel:
    label = "Median" if level == 0.5 else f"p{int(level * 100)}"
    return stat_panel(
        title,
        f"{label} of `{column}` over appointments scheduled in the range ({rule}). "
        "Percentiles interpolate between values (quantileExactInclusive, like numpy's default).",
        sql(f"""
            SELECT quantileExactInclusive({level})({column}) AS "{title}"
            FROM appointment_journeys FINAL
            WHERE $__timeFilter(scheduled_start) AND {{filters}}
        """),
        unit="m",
        decimals=1,
        thresholds=WAIT_THRESHOLDS,
        width=width,
    )


def build() -> dashboard.Dashboard:
    """The "Operations today" dashboard."""
    return (
        journeys_dashboard(
            UID,
            "Operations today",
            "Where patients wait right now, which clinics run late, and every friction event as it happens.",
            time_from="now/d",
            refresh="10s",
        )
        .with_row(dashboard.Row("Right now"))
        .with_panel(
            stat_panel(
                "Arrivals",
                "Patients who arrived in the range: `patient.arrived` (in person) and first patient "
                "`participant.joined` (telehealth), counted at their event time.",
                sql(f"""
                    SELECT
                        countIf(arrived_at >= ($__fromTime) AND arrived_at <= ($__toTime)) AS "In person",
                        countIf(patient_joined_at >= ($__fromTime) AND patient_joined_at <= ($__toTime)) AS "Telehealth"
                    FROM appointment_journeys FINAL
                    WHERE {NEAR_THE_RANGE} AND {{filters}}
                """),
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Waiting now",
                "Patients in a waiting stage at the end of the range (now, on a live dashboard): "
                "arrived but not checked in, checked in but not roomed (lobby), roomed but the provider "
                "has not started (room), in the virtual waiting room, or in an open queue wait "
                "(`wait.started` without `wait.ended`), and not yet seen by the provider, checked out or "
                "gone (left without being seen). Waits open for more than 12 hours are ignored.",
                sql(f"""
                    SELECT uniqExact(appointment_id) AS "Waiting now",
                           round(max(dateDiff('second', started_at, ($__toTime))) / 60, 1) AS "Longest wait"
                    FROM (
                        SELECT appointment_id, started_at
                        FROM stage_intervals FINAL
                        WHERE stage IN {WAITING_STAGES}
                          AND started_at <= ($__toTime) AND started_at > ($__toTime) - INTERVAL 12 HOUR
                          AND (ended_at IS NULL OR ended_at > ($__toTime))
                          AND {{filters}}
                          AND appointment_id NOT IN ({SEEN_OR_GONE})
                        UNION ALL
                        SELECT appointment_id, started_at
                        FROM queue_waits FINAL
                        WHERE started_at <= ($__toTime) AND started_at > ($__toTime) - INTERVAL 12 HOUR
                          AND (ended_at IS NULL OR ended_at > ($__toTime))
                          AND {{filters}}
                          AND appointment_id NOT IN ({GONE})
                    )
                """),
                thresholds=[(None, "green"), (15, "yellow"), (30, "red")],
                units={"Longest wait": "m"},
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Providers late now",
                "Providers whose latest `provider.started` in the range was more than 15 minutes after "
                "the scheduled start (provider start delay > 15 min, the friction rule).",
                sql("""
                    SELECT countIf(latest_delay > 15) AS "Running late"
                    FROM (
                        SELECT provider_id, argMax(provider_start_delay_min, provider_started_at) AS latest_delay
                        FROM appointment_journeys FINAL
                        WHERE $__timeFilter(scheduled_start) AND provider_started_at IS NOT NULL
                          AND provider_id IS NOT NULL AND {filters}
                        GROUP BY provider_id
                    )
                """),
                thresholds=[(None, "green"), (1, "yellow"), (3, "red")],
                width=4,
            )
        )
        .with_panel(
            stat_panel(
                "Median cycle time",
                "IHI office-visit cycle time: `patient.checked_out` − `patient.arrived`, median over "
                "in-person visits scheduled in the range.",
                sql("""
                    SELECT quantileExactInclusive(0.5)(cycle_time_min) AS "Cycle time"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {filters}
                """),
                unit="m",
                decimals=0,
                thresholds=[(None, "green"), (60, "yellow"), (90, "red")],
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Friction events",
                "Touchpoints that crossed a friction rule in the range (one per rule hit per journey), "
                "by the time of the touchpoint.",
                sql("""
                    SELECT count() AS "Friction events"
                    FROM friction_events FINAL
                    WHERE $__timeFilter(occurred_at) AND {filters}
                """),
                thresholds=[(None, "green"), (20, "yellow"), (50, "red")],
                width=5,
            )
        )
        .with_row(dashboard.Row("Waits"))
        .with_panel(_wait_stat("Lobby wait p50", "lobby_wait_min", 0.5, "lobby wait = roomed − checked in"))
        .with_panel(_wait_stat("Lobby wait p90", "lobby_wait_min", 0.9, "lobby wait = roomed − checked in"))
        .with_panel(_wait_stat("Room wait p50", "room_wait_min", 0.5, "room wait = provider started − roomed"))
        .with_panel(_wait_stat("Room wait p90", "room_wait_min", 0.9, "room wait = provider started − roomed"))
        .with_panel(
            _wait_stat(
                "Check-in p90",
                "arrival_to_checkin_min",
                0.9,
                "arrival to check-in = checked in − arrived",
                width=4,
            )
        )
        .with_panel(
            _wait_stat(
                "Check-in to provider p50",
                "checkin_to_provider_min",
                0.5,
                "check-in to provider = provider started − checked in",
                width=8,
            )
        )
        .with_panel(
            bar_panel(
                "Lobby and room waits by site",
                "Median and p90 lobby wait (roomed − checked in) and room wait (provider started − roomed) "
                "per site, over appointments scheduled in the range. Friction rules: lobby > 20 min, room > 15 min.",
                sql("""
                    SELECT site_id AS Site,
                           quantileExactInclusive(0.5)(lobby_wait_min) AS "Lobby p50",
                           quantileExactInclusive(0.9)(lobby_wait_min) AS "Lobby p90",
                           quantileExactInclusive(0.5)(room_wait_min) AS "Room p50",
                           quantileExactInclusive(0.9)(room_wait_min) AS "Room p90"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {filters}
                      AND (lobby_wait_min IS NOT NULL OR room_wait_min IS NOT NULL)
                    GROUP BY site_id
                    ORDER BY site_id
                """),
                x_field="Site",
                unit="m",
            )
        )
        .with_panel(
            timeseries_panel(
                "Lobby and room waits through the day",
                "Median and p90 lobby and room waits of the appointments scheduled in each interval "
                "(by scheduled start), so a clinic falling behind shows as a rising line.",
                sql("""
                    SELECT $__timeInterval(scheduled_start) AS time,
                           quantileExactInclusive(0.5)(lobby_wait_min) AS "Lobby p50",
                           quantileExactInclusive(0.9)(lobby_wait_min) AS "Lobby p90",
                           quantileExactInclusive(0.5)(room_wait_min) AS "Room p50",
                           quantileExactInclusive(0.9)(room_wait_min) AS "Room p90"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {filters}
                      AND (lobby_wait_min IS NOT NULL OR room_wait_min IS NOT NULL)
                    GROUP BY time
                    ORDER BY time
                """),
                unit="m",
                min_interval="15m",
            )
        )
        .with_row(dashboard.Row("Flow and clinics running late"))
        .with_panel(
            timeseries_panel(
                "Arrivals and check-outs",
                "Patients arriving (`patient.arrived`) and leaving (`patient.checked_out`) per interval, "
                "at their event times: the clinic's inflow against its outflow.",
                sql(f"""
                    SELECT $__timeInterval(moment) AS time,
                           countIf(kind = 1) AS "Arrived",
                           countIf(kind = 2) AS "Checked out"
                    FROM appointment_journeys FINAL
                    ARRAY JOIN [arrived_at, checked_out_at] AS moment, [1, 2] AS kind
                    WHERE {NEAR_THE_RANGE} AND moment IS NOT NULL AND $__timeFilter(moment) AND {{filters}}
                    GROUP BY time
                    ORDER BY time
                """),
                min_interval="15m",
                bars=True,
                colors={"Arrived": "green", "Checked out": "blue"},
            )
        )
        .with_panel(
            timeseries_panel(
                "Cycle time",
                "IHI office-visit cycle time (`patient.checked_out` − `patient.arrived`), median and p90 "
                "of the visits that checked out in each interval. Friction rule: cycle time > 90 min.",
                sql(f"""
                    SELECT $__timeInterval(checked_out_at) AS time,
                           quantileExactInclusive(0.5)(cycle_time_min) AS "Cycle time p50",
                           quantileExactInclusive(0.9)(cycle_time_min) AS "Cycle time p90"
                    FROM appointment_journeys FINAL
                    WHERE {NEAR_THE_RANGE} AND checked_out_at IS NOT NULL AND $__timeFilter(checked_out_at)
                      AND cycle_time_min IS NOT NULL AND {{filters}}
                    GROUP BY time
                    ORDER BY time
                """),
                unit="m",
                min_interval="30m",
            )
        )
        .with_panel(
            timeseries_panel(
                "Scheduled, arrived and completed per hour",
                "Appointments by the hour of their scheduled start: booked, arrived (in person or joined "
                "by video) and completed, from the per-site hourly rollup (`site_hourly`) the writer keeps. "
                "The provider filter does not apply here.",
                sql("""
                    SELECT $__timeInterval(hour) AS time,
                           sum(appointments) AS "Scheduled",
                           sum(arrivals) AS "Arrived",
                           sum(completed) AS "Completed"
                    FROM site_hourly FINAL
                    WHERE $__timeFilter(hour) AND {site_filters}
                    GROUP BY time
                    ORDER BY time
                """),
                min_interval="1h",
                colors={"Scheduled": "purple", "Arrived": "green", "Completed": "blue"},
                width=24,
            )
        )
        .with_panel(
            table_panel(
                "Providers running late",
                "Provider start delay (`provider.started` − scheduled start) per provider over the "
                "appointments scheduled in the range: visits started, median and worst delay, how many "
                "started more than 15 minutes late (the friction rule) and the delay of the latest start.",
                sql("""
                    SELECT provider_id AS Provider,
                           site_id AS Site,
                           department AS Department,
                           count() AS Started,
                           round(quantileExactInclusive(0.5)(provider_start_delay_min), 1) AS "Median delay",
                           round(max(provider_start_delay_min), 1) AS "Worst delay",
                           countIf(provider_start_delay_min > 15) AS "Over 15 min",
                           round(argMax(provider_start_delay_min, provider_started_at), 1) AS "Latest delay"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND provider_started_at IS NOT NULL
                      AND provider_id IS NOT NULL AND {filters}
                    GROUP BY provider_id, site_id, department
                    ORDER BY "Median delay" DESC, Provider
                    LIMIT 15
                """),
                units={"Median delay": "m", "Worst delay": "m", "Latest delay": "m"},
                width=14,
                height=10,
            )
        )
        .with_panel(
            bar_panel(
                "Friction by rule",
                "Friction events in the range per rule (lobby wait > 20 min, room wait > 15 min, provider "
                "start delay > 15 min, cycle time > 90 min, no-show, ...), split by severity.",
                sql(f"""
                    SELECT {RULE_LABEL} AS Rule,
                           countIf(severity = 'high') AS High,
                           countIf(severity = 'medium') AS Medium,
                           countIf(severity = 'low') AS Low
                    FROM friction_events FINAL
                    WHERE $__timeFilter(occurred_at) AND {{filters}}
                    GROUP BY rule
                    ORDER BY count() DESC, rule
                """),
                x_field="Rule",
                horizontal=True,
                stacked=True,
                colors={level.capitalize(): color for level, color in SEVERITY_COLORS.items()},
                width=10,
                height=10,
            )
        )
        .with_row(dashboard.Row("Friction feed"))
        .with_panel(
            table_panel(
                "Latest friction events",
                "The latest friction events, newest first: the touchpoint time (the event that closed the "
                "measured interval), where it happened, the rule, its severity, what was measured and the "
                "rule's limit (none for yes/no rules such as a no-show). No patient identifier is shown.",
                sql(f"""
                    SELECT occurred_at AS Time,
                           site_id AS Site,
                           department AS Department,
                           ifNull(provider_id, '') AS Provider,
                           {RULE_LABEL} AS Rule,
                           severity AS Severity,
                           {MEASURED} AS Measured,
                           {RULE_LIMIT} AS "Limit"
                    FROM friction_events FINAL
                    WHERE $__timeFilter(occurred_at) AND {{filters}}
                    ORDER BY occurred_at DESC, rule
                    LIMIT 100
                """),
                value_colors={"Severity": SEVERITY_COLORS},
                height=12,
            )
        )
    )
