"""Dashboard 4, "Patient loyalty": does friction cost us patients?

The retention measures of ``journey/METRICS.md`` ("Retention"), from the SQL of
:mod:`dashboards.retention` (the same as ``journeys loyalty``): a headline in plain
words; lapse rates after friction and after clean visits; the relative risk of not
coming back per friction rule and per site, stratified by department and visit type,
with 95% intervals; patients lost to friction; and the time-to-return curves. Each
estimate says when history is too short instead of showing a number.

Repeat no-shows come from the per-patient summary (``patient_journeys``), restricted to
the patients with an appointment in the range and the selected site, department and
provider. Only counts leave ClickHouse: no panel shows a patient identifier.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.panels import (
    FILTERS,
    bar_panel,
    journeys_dashboard,
    sql,
    stat_panel,
    table_panel,
)
from dashboards.retention import (
    ANY_FRICTION,
    MIN_EXPOSED_DECIDED,
    findings_sql,
    headline_sql,
    kaplan_meier_sql,
    return_windows,
)
from dashboards.rules import RULE_LABEL

UID = "journeys-loyalty"

# The visits whose outcome the panels measure: completed in the range, at the selection.
INDEX = f"$__timeFilter(visit_at) AND {FILTERS}"
# Patients with an appointment in the range and filters (patient_journeys has no site).
PATIENTS_IN_SCOPE = (
    "patient_key IN (SELECT patient_key FROM appointment_journeys FINAL"
    " WHERE $__timeFilter(scheduled_start) AND {filters})"
)
LAPSE = (
    "A completed visit lapsed when the patient had no later completed visit (on a later day) within "
    f"the department's return window ({return_windows().default_days} days unless set otherwise in "
    "dashboards/return_windows.yaml); only visits whose whole window has passed count (decided)."
)
RISK = (
    "Relative risk = Mantel-Haenszel risk ratio of lapsing, exposed vs visits with no friction, within "
    "strata of department x visit type, with its 95% confidence interval (Greenland-Robins). "
    f"Blank when fewer than {MIN_EXPOSED_DECIDED} exposed visits are decided or no visit lapsed."
)
LOST = "Patients lost = lapses after the friction x (1 - 1/relative risk): the lapses it explains."
FINDINGS = findings_sql(INDEX)
FINDING_COLUMNS = """
    round(lapse_rate_exposed, 3) AS "Lapse rate with it",
    round(lapse_rate_unexposed, 3) AS "Lapse rate without friction",
    round(relative_risk, 2) AS "Relative risk",
    if(enough, toString(round(ci_low, 2)) || ' - ' || toString(round(ci_high, 2)), 'not enough history') AS "95% interval",
    round(patients_lost, 1) AS "Patients lost",
    if(enough, toString(round(greatest(patients_lost_low, 0), 1)) || ' - '
        || toString(round(patients_lost_high, 1)), '') AS "Patients lost, 95% interval"
"""
# An estimate and its interval bounds in one colour: a threshold colouring each bound
# on its own would paint one interval in two verdicts.
NEUTRAL = [(None, "blue")]
RATE_UNITS = {"Lapse rate with it": "percentunit", "Lapse rate without friction": "percentunit"}


def build() -> dashboard.Dashboard:
    """The "Patient loyalty" dashboard."""
    return (
        journeys_dashboard(
            UID,
            "Patient loyalty",
            "Does friction cost us patients? Lapse after friction vs clean visits, by rule and site, with "
            "95% intervals, patients lost to friction, time to return; and repeat no-shows.",
            time_from="now-180d",
            refresh="5m",
        )
        .with_row(dashboard.Row("Does friction cost us patients?"))
        .with_panel(
            table_panel(
                "What friction costs",
                f"The friction rule that explains the most lost patients among those with a clear effect (95% "
                f"interval above 1), in plain words. {LAPSE} {RISK}",
                sql(headline_sql(INDEX, column="Finding")),
                width=24,
                height=3,
            )
        )
        .with_panel(
            stat_panel(
                "Decided visits",
                f"Completed visits in the range whose return window has passed, and how many of them had "
                f"friction. {LAPSE}",
                sql(f"""
                    SELECT exposed_visits + unexposed_visits AS Decided, exposed_visits AS "With friction"
                    FROM ({FINDINGS}) WHERE rule = '{ANY_FRICTION}'
                """),
                width=6,
            )
        )
        .with_panel(
            stat_panel(
                "Lapse rate after friction vs clean",
                f"Share of decided visits that lapsed: after any friction, and after visits without. {LAPSE}",
                sql(f"""
                    SELECT lapse_rate_exposed AS "After friction", lapse_rate_unexposed AS "Clean visits"
                    FROM ({FINDINGS}) WHERE rule = '{ANY_FRICTION}'
                """),
                unit="percentunit",
                decimals=1,
                thresholds=NEUTRAL,
                width=6,
            )
        )
        .with_panel(
            stat_panel(
                "Relative risk of not coming back",
                f"After any friction, against clean visits, with its 95% interval. {RISK}",
                sql(f"""
                    SELECT relative_risk AS "Relative risk", ci_low AS "95% low", ci_high AS "95% high"
                    FROM ({FINDINGS}) WHERE rule = '{ANY_FRICTION}' AND enough
                """),
                decimals=2,
                thresholds=NEUTRAL,
                width=6,
            )
        )
        .with_panel(
            stat_panel(
                "Patients lost to friction",
                f"Lapses after any friction beyond what clean visits' lapse rate explains, with the 95% "
                f"interval. {LOST} {RISK}",
                sql(f"""
                    SELECT patients_lost AS "Patients lost", greatest(patients_lost_low, 0) AS "95% low",
                           patients_lost_high AS "95% high"
                    FROM ({FINDINGS}) WHERE rule = '{ANY_FRICTION}' AND enough
                """),
                decimals=0,
                thresholds=NEUTRAL,
                width=6,
            )
        )
        .with_panel(
            table_panel(
                "Risk of not coming back, by friction rule",
                f"Per friction rule: decided visits with it, lapse rates with it and without any friction, "
                f"relative risk with its 95% interval, patients lost. {LAPSE} {RISK} {LOST}",
                sql(f"""
                    SELECT if(rule = '{ANY_FRICTION}', 'Any friction', {RULE_LABEL}) AS "Friction rule",
                           exposed_visits AS "Visits with it",
                           {FINDING_COLUMNS}
                    FROM ({FINDINGS})
                """),
                units=RATE_UNITS,
                width=24,
                height=9,
            )
        )
        .with_panel(
            table_panel(
                "Risk of not coming back, by site",
                f"Per site: any friction against clean visits there. {LAPSE} {RISK} {LOST}",
                sql(f"""
                    SELECT site_id AS Site, exposed_visits AS "Visits with friction",
                           unexposed_visits AS "Clean visits",
                           {FINDING_COLUMNS}
                    FROM ({findings_sql(INDEX, by_site=True)})
                """),
                units=RATE_UNITS,
                width=14,
            )
        )
        .with_panel(
            bar_panel(
                "Back within N days (Kaplan-Meier)",
                "Share of completed visits in the range followed by the patient's next completed visit "
                "within N days, after friction and after clean visits: Kaplan-Meier estimate, visits "
                "not yet followed long enough censored at the data's latest visit.",
                sql(f"""
                    SELECT toString(days) AS "Days after the visit",
                           maxIf(returned, group = 'after friction') AS "After friction",
                           maxIf(returned, group = 'no friction') AS "No friction"
                    FROM ({kaplan_meier_sql(INDEX)})
                    GROUP BY days
                    ORDER BY days
                """),
                x_field="Days after the visit",
                unit="percentunit",
                width=10,
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
                "appointments (per-patient summary).",
                sql(f"""
                    SELECT if(no_shows >= 3, '3+', toString(no_shows)) AS "No-shows",
                           count() AS Patients
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
