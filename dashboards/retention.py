"""Does friction cost us patients? The retention estimates, as ClickHouse SQL.

One home for the measures of ``journey/METRICS.md`` ("Retention"): the loyalty
dashboard's panels and ``journeys loyalty`` both run the SQL built here, so Grafana,
the report and the command give the same numbers.

- A completed visit is *decided* once its whole return window (by department,
  :data:`RETURN_WINDOWS`) lies before the data's watermark (its latest current visit); it
  *lapsed* when no later completed visit of the patient, on a later day (12 hours or
  more after), began within the window. Undecided visits are left out of lapse rates:
  counting early returns but not yet-missing ones would flatter recent visits.
- The relative risk of lapsing after friction is the Mantel-Haenszel risk ratio over
  strata of department x visit type (who the patients are and why they came), with the
  Greenland-Robins variance of its log for the 95% interval; the reference group is
  the decided visits with no friction at all. Per rule: visits that crossed the rule
  against clean visits (visits with only other friction are in neither group).
- Patients lost to friction: the excess lapses among exposed visits,
  ``lapses x (1 - 1/RR)`` (the attributable number among the exposed), with the
  interval from the risk ratio's.
- Time to return: Kaplan-Meier curves of days to the next completed visit, censored
  at the watermark, for visits with friction and without.

The SQL takes one placeholder, ``{index}``: a condition on the visits whose outcome is
measured, e.g. the dashboard's time range and variables.

>>> sql = findings_sql("site_id = 'a'")
>>> "riskratio" not in sql and "relative_risk" in sql
True
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from journey.friction import Rule, load_rules

WINDOWS_FILE = Path(__file__).with_name("return_windows.yaml")
ANY_FRICTION = "any_friction"  # the scope of every friction rule together
KAPLAN_MEIER_DAYS = (7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91)
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
MIN_EXPOSED_DECIDED = 10  # fewer decided exposed visits than this: "not enough history"
# The data's watermark: its latest current visit (an outdated version of a visit, e.g. one
# a reschedule moved, must not move it).
WATERMARK_SQL = "SELECT toUnixTimestamp64Milli(max(visit_at)) AS watermark_ms FROM patient_visits FINAL"


class ReturnWindows(BaseModel):
    """How long a patient may take to come back before the visit counts as lapsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_days: int = Field(90, ge=1, le=3650)
    by_department: dict[str, int] = Field(default_factory=dict)


@cache
def return_windows(path: Path = WINDOWS_FILE) -> ReturnWindows:
    """The return windows (``dashboards/return_windows.yaml``), validated."""
    with path.open(encoding="utf-8") as file:
        return ReturnWindows.model_validate(yaml.safe_load(file) or {})


def _window_days_sql(windows: ReturnWindows) -> str:
    if not windows.by_department:
        return str(windows.default_days)
    names = ", ".join(f"'{name}'" for name in windows.by_department)
    days = ", ".join(str(days) for days in windows.by_department.values())
    return f"transform(department, [{names}], [{days}], {windows.default_days})"


def visits_sql(index: str) -> str:
    """One row per completed visit matching ``index``: stratum, exposure and outcome.

    Columns: ``site_id, department, visit_type, visit_at, had_friction,
    friction_rules, window_days, days_observed, days_to_return`` (NULL: no return yet),
    ``decided``, ``lapsed``. The per-patient journey writes each visit's return
    (``days_to_return``), so this reads only the visits of ``index``.
    """
    window = _window_days_sql(return_windows())
    return f"""
        SELECT site_id, department, visit_type, visit_at, had_friction, friction_rules,
               {window} AS window_days,
               (watermark_ms - toUnixTimestamp64Milli(visit_at)) / 86400000 AS days_observed,
               days_to_return,
               days_observed >= window_days AS decided,
               decided AND (days_to_return IS NULL OR days_to_return > window_days) AS lapsed
        FROM patient_visits FINAL
        CROSS JOIN ({WATERMARK_SQL}) AS w
        WHERE {index}
    """


def strata_sql(index: str, by_site: bool = False) -> str:
    """Per scope (a friction rule, or ``any friction``) and stratum: the 2x2 counts.

    ``a``/``n1``: lapses/decided visits exposed; ``c``/``n0``: the same for clean visits.
    With ``by_site``, scopes are ``any friction`` per site (``site_id`` column). A clean
    visit is the reference of every scope: of ``any friction`` and of each rule seen.
    """
    site = "site_id, " if by_site else ""
    scopes = (
        f"['{ANY_FRICTION}']"
        if by_site
        else f"if(had_friction = 1, arrayConcat(['{ANY_FRICTION}'], friction_rules), all_rules)"
    )
    # One pass over the visits: counted per stratum and rule set first, so the rules seen
    # come from a window over those few groups (a second subquery would read the visits again).
    return f"""
        SELECT {site}scope, department, visit_type,
               sumIf(lapses, had_friction = 1) AS a, sumIf(visits, had_friction = 1) AS n1,
               sumIf(lapses, had_friction = 0) AS c, sumIf(visits, had_friction = 0) AS n0
        FROM (
            SELECT {site}department, visit_type, had_friction, friction_rules,
                   countIf(lapsed) AS lapses, count() AS visits,
                   arrayConcat(['{ANY_FRICTION}'], arraySort(groupUniqArrayArray(friction_rules) OVER ())) AS all_rules
            FROM ({visits_sql(index)})
            WHERE decided
            GROUP BY {site}department, visit_type, had_friction, friction_rules
        )
        ARRAY JOIN {scopes} AS scope
        GROUP BY {site}scope, department, visit_type
    """


def findings_sql(index: str, by_site: bool = False) -> str:
    """The findings per scope: visits, lapse rates, relative risk with its 95% CI, patients lost.

    Columns: ``[site_id,] rule, exposed_visits, unexposed_visits, exposed_lapses,
    unexposed_lapses, lapse_rate_exposed, lapse_rate_unexposed, relative_risk, ci_low,
    ci_high, patients_lost, patients_lost_low, patients_lost_high, enough`` (0: not
    enough decided visits for an estimate; the estimate columns are then NULL), ordered
    by patients lost.
    """
    site = "site_id, " if by_site else ""
    return f"""
        SELECT {site}scope AS rule,
               sum(n1) AS exposed_visits, sum(n0) AS unexposed_visits,
               sum(a) AS exposed_lapses, sum(c) AS unexposed_lapses,
               exposed_lapses / nullIf(exposed_visits, 0) AS lapse_rate_exposed,
               unexposed_lapses / nullIf(unexposed_visits, 0) AS lapse_rate_unexposed,
               sum(a * n0 / (n1 + n0)) AS r, sum(c * n1 / (n1 + n0)) AS s,
               sum((n1 * n0 * (a + c) - a * c * (n1 + n0)) / ((n1 + n0) * (n1 + n0))) AS p,
               exposed_visits >= {MIN_EXPOSED_DECIDED} AND r > 0 AND s > 0 AS enough,
               if(enough, r / s, NULL) AS relative_risk,
               if(enough, sqrt(p / (r * s)), NULL) AS log_se,
               exp(log(relative_risk) - {Z_95} * log_se) AS ci_low,
               exp(log(relative_risk) + {Z_95} * log_se) AS ci_high,
               exposed_lapses * (1 - 1 / relative_risk) AS patients_lost,
               exposed_lapses * (1 - 1 / ci_low) AS patients_lost_low,
               exposed_lapses * (1 - 1 / ci_high) AS patients_lost_high
        FROM ({strata_sql(index, by_site)})
        GROUP BY {site}scope
        ORDER BY enough DESC, rule = '{ANY_FRICTION}' DESC, patients_lost DESC, {site}rule
    """


def kaplan_meier_sql(index: str) -> str:
    """Share of visits followed by a return within N days (1 - Kaplan-Meier survival).

    Per visit: the days to its return, or censored at the watermark; at each day mark
    of :data:`KAPLAN_MEIER_DAYS`, with and without friction. Columns: ``days``,
    ``group`` (``after friction`` / ``no friction``), ``returned`` (0..1) and
    ``followed`` (visits neither back nor censored before that day: the curve's support).
    """
    marks = ", ".join(str(day) for day in KAPLAN_MEIER_DAYS)
    return f"""
        WITH visits AS ({visits_sql(index)}),
        exits AS (
            SELECT group, day, returns, sum(returns + censored) OVER (
                       PARTITION BY group ORDER BY day DESC ROWS UNBOUNDED PRECEDING
                   ) AS at_risk
            FROM (
                SELECT if(had_friction = 1, 'after friction', 'no friction') AS group,
                       toUInt32(floor(ifNull(days_to_return, days_observed))) AS day,
                       countIf(days_to_return IS NOT NULL) AS returns,
                       countIf(days_to_return IS NULL) AS censored
                FROM visits
                GROUP BY group, day
            )
        )
        SELECT mark AS days, group, 1 - exp(sumIf(log1p(-returns / at_risk), day <= mark)) AS returned,
               maxIf(at_risk, day >= mark) AS followed
        FROM exits
        ARRAY JOIN [{marks}] AS mark
        GROUP BY days, group
        ORDER BY group, days
    """


def rule_phrase(rule: Rule) -> str:
    """What a patient went through, for a headline: "waited over 20 minutes in the lobby"."""
    phrase = PHRASES.get(rule.metric)
    if phrase is None:
        return f"met the {rule.name.replace('_', ' ')} rule"
    return phrase.format(threshold=f"{rule.threshold:g}" if rule.threshold is not None else "")


PHRASES = {
    "lobby_wait_min": "waited over {threshold} minutes in the lobby",
    "room_wait_min": "waited over {threshold} minutes in the exam room",
    "provider_start_delay_min": "saw their provider start over {threshold} minutes late",
    "cycle_time_min": "spent over {threshold} minutes in the clinic",
    "arrival_to_checkin_min": "waited over {threshold} minutes to check in",
    "virtual_wait_min": "waited over {threshold} minutes in the virtual waiting room",
    "telehealth_abandoned": "gave up on a telehealth visit",
    "drop_count": "were dropped {threshold} or more times from a video visit",
    "wait_estimate_error_min": "were told a wait over {threshold} minutes off",
    "no_show": "missed a visit",
    "late_cancelled": "cancelled late",
    "left_without_being_seen": "left without being seen",
}


def headline_sql(index: str, rules: tuple[Rule, ...] | None = None, column: str = "headline") -> str:
    """One plain-language sentence: the friction that costs the most patients, with its
    interval; or that no friction shows a clear effect; or that history is too short.
    One row, one column named ``column``."""
    rules = load_rules() if rules is None else rules
    names = ", ".join(f"'{rule.name}'" for rule in rules)
    phrases = ", ".join("'" + rule_phrase(rule).replace("'", "''") + "'" for rule in rules)
    return f"""
        SELECT multiIf(
            countIf(enough) = 0,
            'Not enough history yet: a visit counts once its return window has passed '
            || '({return_windows().default_days} days in most departments).',
            countIf(enough AND ci_low > 1 AND rule != '{ANY_FRICTION}') = 0,
            'No friction rule shows a clear effect on patients coming back (95% intervals include 1).',
            'Patients who ' || transform(argMaxIf(rule, patients_lost, enough AND ci_low > 1 AND rule != '{ANY_FRICTION}'),
                                         [{names}], [{phrases}], 'had friction')
            || ' were ' || toString(round(argMaxIf(relative_risk, patients_lost, enough AND ci_low > 1 AND rule != '{ANY_FRICTION}'), 1))
            || 'x (' || toString(round(argMaxIf(ci_low, patients_lost, enough AND ci_low > 1 AND rule != '{ANY_FRICTION}'), 1))
            || '-' || toString(round(argMaxIf(ci_high, patients_lost, enough AND ci_low > 1 AND rule != '{ANY_FRICTION}'), 1))
            || ') as likely not to come back.'
        ) AS "{column}"
        FROM ({findings_sql(index)})
    """
