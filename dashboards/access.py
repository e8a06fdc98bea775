"""Dashboard 2, "Access and no-shows": how far ahead patients book and who does not come.

For access-centre leads: the lead-time distribution, and no-show and late-cancellation
rates by site, department, lead-time bucket and number of reminders sent. Appointments
are counted by their (current) scheduled start.

Rates (SPEC section 3 statuses):

- no-show rate = ``status = 'no_show'`` / appointments that were due and not cancelled
  (``completed``, ``no_show``, ``left_without_being_seen``, ``in_progress``);
- late-cancellation rate = ``late_cancelled = 1`` (cancelled by the patient less than
  24 h before the start) / all appointments scheduled in the range.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, dashboard

from dashboards.panels import (
    bar_panel,
    journeys_dashboard,
    sql,
    stat_panel,
    timeseries_panel,
)

UID = "journeys-access"

DUE = "status IN ('completed', 'no_show', 'left_without_being_seen', 'in_progress')"
NO_SHOW_RATE = f"countIf(status = 'no_show') / nullIf(countIf({DUE}), 0)"
LATE_CANCEL_RATE = "countIf(late_cancelled = 1) / nullIf(count(), 0)"
RATES = f'{NO_SHOW_RATE} AS "No-show rate", {LATE_CANCEL_RATE} AS "Late-cancellation rate"'

LEAD_TIME_BUCKET = (
    "multiIf(lead_time_days < 1, 'same day', lead_time_days < 3, '1-2 days', lead_time_days < 8, '3-7 days',"
    " lead_time_days < 15, '8-14 days', lead_time_days < 31, '15-30 days', lead_time_days < 61, '31-60 days',"
    " 'over 60 days')"
)

# The two rates keep their colours on every panel; neither is green, which would read "good".
RATE_COLORS = {"No-show rate": "orange", "Late-cancellation rate": "purple"}

RATE_DEFINITION = (
    "No-show rate = no-shows / appointments that were due and not cancelled (completed, no-show, left "
    "without being seen, in progress); late-cancellation rate = patient cancellations less than 24 h "
    "before the start / all appointments scheduled in the range."
)


def _rates_by(title: str, expression: str, label: str, what: str, order: str) -> barchart.Panel:
    return bar_panel(
        title,
        f"No-show and late-cancellation rates by {what}. {RATE_DEFINITION}",
        sql(f"""
            SELECT {expression} AS "{label}", {RATES}
            FROM appointment_journeys FINAL
            WHERE $__timeFilter(scheduled_start) AND {{filters}}
            GROUP BY "{label}"
            ORDER BY {order}
        """),
        x_field=label,
        unit="percentunit",
        colors=RATE_COLORS,
    )


def build() -> dashboard.Dashboard:
    """The "Access and no-shows" dashboard."""
    return (
        journeys_dashboard(
            UID,
            "Access and no-shows",
            "How far ahead patients book, and who does not come: no-shows and late cancellations.",
            time_from="now-30d",
            refresh="1m",
        )
        .with_row(dashboard.Row("Summary"))
        .with_panel(
            stat_panel(
                "Appointments",
                "Appointments whose current scheduled start (after reschedules) falls in the range, any status.",
                sql("""
                    SELECT count() AS Appointments
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {filters}
                """),
                width=4,
            )
        )
        .with_panel(
            stat_panel(
                "No-show rate",
                "Appointments that ended as no-show (an `appointment.no_show` event, or no arrival / no "
                "patient join 30 minutes after the start) over the appointments that were due and not "
                "cancelled.",
                sql(f"""
                    SELECT {NO_SHOW_RATE} AS "No-show rate"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {{filters}}
                """),
                unit="percentunit",
                decimals=1,
                thresholds=[(None, "green"), (0.08, "yellow"), (0.15, "red")],
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Late-cancellation rate",
                "Appointments cancelled by the patient less than 24 hours before the scheduled start, over "
                "all appointments scheduled in the range.",
                sql(f"""
                    SELECT {LATE_CANCEL_RATE} AS "Late-cancellation rate"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {{filters}}
                """),
                unit="percentunit",
                decimals=1,
                thresholds=[(None, "green"), (0.05, "yellow"), (0.1, "red")],
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Median lead time",
                "Lead time = current scheduled start − first `appointment.booked` time, in days; median over "
                "appointments scheduled in the range.",
                sql("""
                    SELECT quantileExactInclusive(0.5)(lead_time_days) AS "Lead time"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {filters}
                """),
                unit="d",
                decimals=1,
                width=5,
            )
        )
        .with_panel(
            stat_panel(
                "Mean reschedules",
                "Distinct `appointment.rescheduled` events per appointment scheduled in the range (mean).",
                sql("""
                    SELECT avg(reschedule_count) AS "Reschedules"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {filters}
                """),
                decimals=2,
                width=5,
            )
        )
        .with_row(dashboard.Row("Lead time"))
        .with_panel(
            bar_panel(
                "Lead-time distribution",
                "Appointments scheduled in the range by lead time (scheduled start − first booking), in "
                "buckets of days, with how many of them became no-shows.",
                sql(f"""
                    SELECT {LEAD_TIME_BUCKET} AS "Lead time",
                           count() AS Appointments,
                           countIf(status = 'no_show') AS "No-shows"
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND lead_time_days IS NOT NULL AND {{filters}}
                    GROUP BY "Lead time"
                    ORDER BY min(lead_time_days)
                """),
                x_field="Lead time",
                colors={"Appointments": "blue", "No-shows": "orange"},
            )
        )
        .with_panel(
            _rates_by(
                "Rates by lead time",
                LEAD_TIME_BUCKET,
                "Lead time",
                "lead-time bucket (scheduled start − first booking)",
                "min(lead_time_days)",
            )
        )
        .with_row(dashboard.Row("Where and why"))
        .with_panel(_rates_by("Rates by site", "site_id", "Site", "site", '"Site"'))
        .with_panel(_rates_by("Rates by department", "department", "Department", "department", '"Department"'))
        .with_panel(
            _rates_by(
                "Rates by reminders sent",
                "if(reminders_sent >= 3, '3+', toString(reminders_sent))",
                "Reminders",
                "number of `appointment.reminder_sent` events before the scheduled start",
                "min(reminders_sent)",
            )
        )
        .with_panel(
            timeseries_panel(
                "No-show and late-cancellation rates over time",
                f"The two rates per interval of scheduled start (at least a day). {RATE_DEFINITION}",
                sql(f"""
                    SELECT $__timeInterval(scheduled_start) AS time, {RATES}
                    FROM appointment_journeys FINAL
                    WHERE $__timeFilter(scheduled_start) AND {{filters}}
                    GROUP BY time
                    ORDER BY time
                """),
                unit="percentunit",
                min_interval="1d",
                colors=RATE_COLORS,
            )
        )
    )
