"""Dashboard 4, "Patient loyalty": does friction cost us patients?

A completed visit (``patient_visits``) either had friction (any friction record) or
not; ``returned_within_90d`` says whether the patient came back for another completed
visit within 90 days: 1 as soon as one is seen, 0 once 90 days passed in event time
without one, NULL while undecided. Return rates are over *decided* visits only, so a
recent range shows few decided visits; the panels show how many are still open.

Repeat no-shows come from the per-patient summary (``patient_journeys``), restricted to
the patients with an appointment in the range and the selected site, department and
provider. Only counts leave ClickHouse: no panel shows a patient identifier.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat

from dashboards.panels import (
    bar_panel,
    journeys_dashboard,
    sql,
    stat_panel,
    table_panel,
)

UID = "journeys-loyalty"

VISITS = "FROM patient_visits FINAL WHERE $__timeFilter(visit_at) AND {filters}"
RETURN_RATE = "countIf(returned_within_90d = 1) / nullIf(countIf(returned_within_90d IS NOT NULL), 0)"
# Patients with an appointment in the range and filters (patient_journeys has no site).
PATIENTS_IN_SCOPE = (
    "patient_key IN (SELECT patient_key FROM appointment_journeys FINAL"
    " WHERE $__timeFilter(scheduled_start) AND {filters})"
)
DECIDED = (
    "Return rate = visits followed by another completed visit of the same patient within 90 days / "
    "visits whose 90 days have passed or that already saw a return (decided)."
)


def _return_stat(title: str, had_friction: int, description: str) -> stat.Panel:
    return stat_panel(
        title,
        f"{description} {DECIDED}",
        sql(f"""
            SELECT {RETURN_RATE} AS "Returned within 90 days"
            {VISITS} AND had_friction = {had_friction}
        """),
        unit="percentunit",
        decimals=1,
        width=5,
    )


def build() -> dashboard.Dashboard:
    """The "Patient loyalty" dashboard."""
    return (
        journeys_dashboard(
            UID,
            "Patient loyalty",
            "Do patients come back after a visit with friction? Return within 90 days and repeat no-shows.",
            time_from="now-180d",
            refresh="5m",
        )
        .with_row(dashboard.Row("Return within 90 days"))
        .with_panel(
            stat_panel(
                "Completed visits",
                "Completed visits (status completed) in the range, by scheduled start, and how many of them "
                "had friction (any friction record on the appointment).",
                sql(f"""
                    SELECT count() AS Visits, countIf(had_friction = 1) AS "With friction"
                    {VISITS}
                """),
                width=5,
            )
        )
        .with_panel(
            _return_stat(
                "Returned after friction", 1, "Completed visits that had friction and were followed by a return."
            )
        )
        .with_panel(
            _return_stat(
                "Returned after a clean visit", 0, "Completed visits without friction followed by a return."
            )
        )
        .with_panel(
            stat_panel(
                "Undecided visits",
                "Completed visits less than 90 days ago (in event time) with no return yet: they count in "
                "neither return rate until a return is seen or 90 days pass.",
                sql(f"""
                    SELECT countIf(returned_within_90d IS NULL) AS Undecided
                    {VISITS}
                """),
                width=4,
            )
        )
        .with_panel(
            stat_panel(
                "Days between visits",
                "Median days between a patient's two latest completed visits (days since previous "
                "completed visit), over the patients with an appointment in the range.",
                sql(f"""
                    SELECT quantileExactInclusive(0.5)(days_since_previous_completed_visit) AS Days
                    FROM patient_journeys FINAL
                    WHERE {PATIENTS_IN_SCOPE}
                """),
                unit="d",
                decimals=0,
                width=5,
            )
        )
        .with_panel(
            bar_panel(
                "Return within 90 days: friction vs none",
                f"Return rate of completed visits with friction against visits without. {DECIDED}",
                sql(f"""
                    SELECT if(had_friction = 1, 'after friction', 'no friction') AS Visit,
                           {RETURN_RATE} AS "Return rate"
                    {VISITS}
                    GROUP BY Visit
                    ORDER BY Visit
                """),
                x_field="Visit",
                unit="percentunit",
                width=8,
            )
        )
        .with_panel(
            table_panel(
                "Return by friction rule",
                "Per friction rule that hit a completed visit: visits, decided visits, returns, the return "
                f"rate, and the return rate of visits without friction for comparison. {DECIDED}",
                sql(f"""
                    SELECT rule AS "Friction rule",
                           count() AS Visits,
                           countIf(returned_within_90d IS NOT NULL) AS Decided,
                           countIf(returned_within_90d = 1) AS Returned,
                           round({RETURN_RATE}, 3) AS "Return rate",
                           round((
                               SELECT {RETURN_RATE} {VISITS} AND had_friction = 0
                           ), 3) AS "Return rate without friction"
                    FROM patient_visits FINAL
                    ARRAY JOIN friction_rules AS rule
                    WHERE $__timeFilter(visit_at) AND {{filters}}
                    GROUP BY rule
                    ORDER BY Visits DESC, rule
                """),
                units={"Return rate": "percentunit", "Return rate without friction": "percentunit"},
                width=16,
            )
        )
        .with_row(dashboard.Row("Repeat no-shows"))
        .with_panel(
            stat_panel(
                "Patients with repeat no-shows",
                "Patients with two or more no-shows over all their appointments (per-patient summary), among "
                "the patients with an appointment in the range; and their share of those patients.",
                sql(f"""
                    SELECT countIf(no_shows >= 2) AS "2+ no-shows",
                           countIf(no_shows >= 2) / nullIf(count(), 0) AS "Share of patients"
                    FROM patient_journeys FINAL
                    WHERE {PATIENTS_IN_SCOPE}
                """),
                units={"Share of patients": "percentunit"},
                width=8,
            )
        )
        .with_panel(
            bar_panel(
                "Patients by number of no-shows",
                "Patients with an appointment in the range, by their number of no-shows over all "
                "appointments (per-patient summary), with their completed visits and late cancellations.",
                sql(f"""
                    SELECT if(no_shows >= 3, '3+', toString(no_shows)) AS "No-shows",
                           count() AS Patients,
                           sum(visits_completed) AS "Visits completed",
                           sum(late_cancellations) AS "Late cancellations"
                    FROM patient_journeys FINAL
                    WHERE {PATIENTS_IN_SCOPE}
                    GROUP BY "No-shows"
                    ORDER BY min(no_shows)
                """),
                x_field="No-shows",
                width=16,
            )
        )
        .with_panel(
            table_panel(
                "Repeat no-shows by site and department",
                "Per site and department: patients with an appointment there in the range, those with two "
                "or more no-shows there in the range, and the no-show appointments they account for.",
                sql("""
                    SELECT site_id AS Site,
                           department AS Department,
                           count() AS Patients,
                           countIf(no_shows >= 2) AS "Repeat no-show patients",
                           sumIf(no_shows, no_shows >= 2) AS "Their no-shows",
                           round(countIf(no_shows >= 2) / count(), 3) AS "Share of patients"
                    FROM (
                        SELECT site_id, department, patient_key, countIf(status = 'no_show') AS no_shows
                        FROM appointment_journeys FINAL
                        WHERE $__timeFilter(scheduled_start) AND {filters}
                        GROUP BY site_id, department, patient_key
                    )
                    GROUP BY site_id, department
                    ORDER BY "Repeat no-show patients" DESC, Site, Department
                """),
                units={"Share of patients": "percentunit"},
            )
        )
    )
