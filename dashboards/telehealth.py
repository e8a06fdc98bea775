"""Dashboard 3, "Telehealth": do virtual visits connect, and how long do patients wait online.

Telehealth visits are journeys with ``modality = 'telehealth'``. Rates are taken over
the visits where the patient joined (``patient_joined_at`` set), so no-shows do not
count as connection failures (they are on the access dashboard).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.panels import (
    bar_panel,
    journeys_dashboard,
    sql,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "journeys-telehealth"

TELEHEALTH = "modality = 'telehealth'"
JOINED = "patient_joined_at IS NOT NULL"
SUCCESS_RATE = f"countIf(telehealth_connected = 1) / nullIf(countIf({JOINED}), 0)"
ABANDON_RATE = f"countIf(telehealth_abandoned = 1) / nullIf(countIf({JOINED}), 0)"

OFFSET_BUCKET = (
    "multiIf(offset < -10, 'over 10 early', offset < -5, '5-10 early', offset < 0, '0-5 early',"
    " offset < 5, '0-5 late', offset < 10, '5-10 late', offset < 15, '10-15 late', 'over 15 late')"
)


def build() -> dashboard.Dashboard:
    """The "Telehealth" dashboard."""
    return (
        journeys_dashboard(
            UID,
            "Telehealth",
            "Connection success, join times, virtual waiting room, drops and abandoned sessions.",
            time_from="now-7d",
            refresh="1m",
        )
        .with_row(dashboard.Row("Summary"))
        .with_panel(
            stat_panel(
                "Telehealth visits",
                "Telehealth appointments scheduled in the range (modality telehealth), and how many of them "
                "the patient joined (`participant.joined`, role patient).",
                sql(f"""
                    SELECT count() AS Scheduled, countIf({JOINED}) AS "Patient joined"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                """),
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Connection success",
                "Telehealth connected (both patient and provider joined) over the visits the patient joined.",
                sql(f"""
                    SELECT {SUCCESS_RATE} AS "Connected"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                """),
                unit="percentunit",
                decimals=1,
                thresholds=[(None, "red"), (0.9, "yellow"), (0.97, "green")],
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Abandoned",
                "Telehealth abandoned (the patient left before any provider joined) over the visits the "
                "patient joined. A friction rule of severity high.",
                sql(f"""
                    SELECT {ABANDON_RATE} AS "Abandoned"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                """),
                unit="percentunit",
                decimals=1,
                thresholds=[(None, "green"), (0.03, "yellow"), (0.08, "red")],
                width=4,
            )
        )
        .with_panel(
            stat_panel(
                "Virtual wait p50 / p90",
                "Virtual wait = first provider join − first patient join, when the patient joined first; "
                "median and p90. Friction rule: virtual wait > 10 min.",
                sql(f"""
                    SELECT quantileExactInclusive(0.5)(virtual_wait_min) AS p50,
                           quantileExactInclusive(0.9)(virtual_wait_min) AS p90
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                """),
                unit="m",
                decimals=1,
                thresholds=[(None, "green"), (5, "yellow"), (10, "red")],
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Drops per 100 visits",
                "`participant.left` with reason dropped (both roles) per 100 telehealth visits the patient "
                "joined; two or more drops in one visit is a friction rule.",
                sql(f"""
                    SELECT 100 * sum(drop_count) / nullIf(countIf({JOINED}), 0) AS "Drops per 100"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                """),
                decimals=1,
                width=5,
            )
        )
        .with_row(dashboard.Row("Connecting"))
        .with_panel(
            timeseries_panel(
                "Connection success and abandonment",
                "Per interval of scheduled start: share of joined visits where both roles joined "
                "(connected) and where the patient left before the provider joined (abandoned).",
                sql(f"""
                    SELECT $__timeInterval(scheduled_start) AS time,
                           {SUCCESS_RATE} AS "Connected",
                           {ABANDON_RATE} AS "Abandoned"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {JOINED} AND {{filters}}
                    GROUP BY time
                    ORDER BY time
                """),
                unit="percentunit",
                min_interval="1h",
                colors={"Connected": "green", "Abandoned": "red"},
            )
        )
        .with_panel(
            bar_panel(
                "Join offsets",
                "When patients and providers join relative to the scheduled start: first patient join − "
                "scheduled start and first provider join − scheduled start, in minutes (negative = early).",
                sql(f"""
                    SELECT {OFFSET_BUCKET} AS "Join time",
                           countIf(role = 'patient') AS Patients,
                           countIf(role = 'provider') AS Providers
                    FROM (
                        SELECT arrayJoin([('patient', patient_join_offset_min),
                                          ('provider', provider_join_offset_min)]) AS joined,
                               joined.1 AS role,
                               joined.2 AS offset
                        FROM appointment_journeys FINAL
                        WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                    )
                    WHERE offset IS NOT NULL
                    GROUP BY "Join time"
                    ORDER BY min(offset)
                """),
                x_field="Join time",
            )
        )
        .with_row(dashboard.Row("Waiting and dropping"))
        .with_panel(
            bar_panel(
                "Virtual wait by site",
                "Median and p90 virtual wait (first provider join − first patient join, patient first) per "
                "site. Friction rule: virtual wait > 10 min.",
                sql(f"""
                    SELECT site_id AS Site,
                           quantileExactInclusive(0.5)(virtual_wait_min) AS "Virtual wait p50",
                           quantileExactInclusive(0.9)(virtual_wait_min) AS "Virtual wait p90"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND virtual_wait_min IS NOT NULL
                      AND {{filters}}
                    GROUP BY site_id
                    ORDER BY site_id
                """),
                x_field="Site",
                unit="m",
                width=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Drops and connection issues",
                "Per interval of scheduled start: `participant.left` with reason dropped and "
                "`connection.issue` events of telehealth visits.",
                sql(f"""
                    SELECT $__timeInterval(scheduled_start) AS time,
                           sum(drop_count) AS Drops,
                           sum(connection_issue_count) AS "Connection issues"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                    GROUP BY time
                    ORDER BY time
                """),
                min_interval="1h",
                bars=True,
                width=8,
            )
        )
        .with_panel(
            bar_panel(
                "Connection issues by kind",
                "`connection.issue` events in the range by kind (audio, video, network) and by the role "
                "that reported them, from the raw events (their copy in `connection_issues`).",
                sql("""
                    SELECT kind AS Kind,
                           countIf(role = 'patient') AS Patient,
                           countIf(role = 'provider') AS Provider
                    FROM connection_issues FINAL
                    WHERE $__timeFilter(occurred_at) AND {filters}
                    GROUP BY Kind
                    ORDER BY Kind
                """),
                x_field="Kind",
                stacked=True,
                width=8,
            )
        )
        .with_panel(
            table_panel(
                "Abandonment by site and department",
                "Per site and department: telehealth visits the patient joined, connected (both roles "
                "joined), abandoned (patient left before the provider joined), the abandonment rate, the "
                "median virtual wait and drops.",
                sql(f"""
                    SELECT site_id AS Site,
                           department AS Department,
                           countIf({JOINED}) AS Joined,
                           countIf(telehealth_connected = 1) AS Connected,
                           countIf(telehealth_abandoned = 1) AS Abandoned,
                           round({ABANDON_RATE}, 3) AS "Abandonment rate",
                           round(quantileExactInclusive(0.5)(virtual_wait_min), 1) AS "Median virtual wait",
                           sum(drop_count) AS Drops
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {TELEHEALTH} AND {{filters}}
                    GROUP BY site_id, department
                    HAVING Joined > 0
                    ORDER BY "Abandonment rate" DESC, Site, Department
                """),
                units={"Abandonment rate": "percentunit", "Median virtual wait": "m"},
            )
        )
    )
