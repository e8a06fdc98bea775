"""Does friction cost us patients? The retention estimates against a known effect.

The simulator sets a causal effect of friction on patients leaving
(``friction_churn``); the loyalty SQL (``dashboards/retention.py``) must recover it
within its 95% interval, find nothing when there is nothing, agree with statsmodels'
estimators on the same counts, and say so when history is too short. The last test runs
the whole way: simulated events through the journey logic and the sink into the
migrated schema, then ``journeys loyalty --json``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.retention_coverage import estimate, run, season
from dashboards.retention import (
    ANY_FRICTION,
    KAPLAN_MEIER_DAYS,
    findings_sql,
    headline_sql,
    kaplan_meier_sql,
    strata_sql,
    visits_sql,
)
from simulator import SimulationConfig
from sinks.client import connect


@pytest.fixture(scope="module")
def client(clickhouse_dsn: str) -> Iterator[Any]:
    client = connect(clickhouse_dsn)
    yield client
    client.close()


@pytest.fixture
def database(client: Any) -> Iterator[str]:
    name = f"retention_{uuid.uuid4().hex[:10]}"
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")


def _findings(client: Any) -> dict[str, dict[str, Any]]:
    return {row["rule"]: row for row in client.query(findings_sql("1")).named_results()}


def test_the_interval_covers_the_effect_that_was_set(client: Any, database: str) -> None:
    estimates = run(client, range(1, 21), effect=1.5, database=database)
    covered = sum(e.covers(1.5) for e in estimates)
    assert covered >= 18, [(e.seed, e.ci_low, e.ci_high) for e in estimates]  # >= 90% of 20 seeds
    assert sum(e.relative_risk or 0 for e in estimates) / len(estimates) == pytest.approx(1.5, abs=0.15)


def test_no_effect_is_found_where_there_is_none(client: Any, database: str) -> None:
    estimates = run(client, range(1, 41), effect=1.0, database=database)
    assert all(e.relative_risk is not None for e in estimates)
    assert sum(e.finds_effect for e in estimates) <= 2  # <= 5% of 40 seeds exclude 1


def test_a_rules_own_effect_is_recovered_per_rule(client: Any, database: str) -> None:
    config = SimulationConfig(seed=3, days=150, sites=2, volume=5, friction_churn=1.0,
                              friction_churn_rules={"provider_start_delay": 3.0})
    estimate(client, database, 3, config)
    findings = _findings(client)
    delay = findings["provider_start_delay"]
    assert delay["ci_low"] > 1 and delay["ci_low"] <= 3.0 <= delay["ci_high"]
    # The other rules cost nobody on their own; the headline names the one that does.
    headline = client.query(headline_sql("1")).result_rows[0][0]
    assert headline.startswith("Patients who saw their provider start over 15 minutes late were ")
    assert "x (" in headline and headline.endswith("as likely not to come back.")


def test_estimates_agree_with_statsmodels(client: Any, database: str) -> None:
    from statsmodels.duration.survfunc import SurvfuncRight
    from statsmodels.stats.contingency_tables import StratifiedTable

    estimate(client, database, 5, season(5, 1.5))
    strata = [row for row in client.query(strata_sql("1")).named_results() if row["scope"] == ANY_FRICTION]
    tables = [[[s["a"], s["n1"] - s["a"]], [s["c"], s["n0"] - s["c"]]] for s in strata if s["n1"] and s["n0"]]
    reference = StratifiedTable(tables)
    ours = _findings(client)[ANY_FRICTION]
    assert ours["relative_risk"] == pytest.approx(reference.riskratio_pooled, rel=1e-9)
    assert ours["exposed_visits"] == sum(s["n1"] for s in strata)

    visits = list(client.query(visits_sql("1")).named_results())
    curves = {(row["days"], row["group"]): row["returned"] for row in client.query(kaplan_meier_sql("1")).named_results()}
    for group, friction in (("after friction", 1), ("no friction", 0)):
        mine = [v for v in visits if v["had_friction"] == friction]
        times = [math.floor(v["days_to_return"] if v["days_to_return"] is not None else v["days_observed"]) for v in mine]
        returned = [int(v["days_to_return"] is not None) for v in mine]
        survival = SurvfuncRight(times, returned)
        for days in KAPLAN_MEIER_DAYS:
            passed = [p for t, p in zip(survival.surv_times, survival.surv_prob, strict=True) if t <= days]
            expected = 1 - (passed[-1] if passed else 1.0)
            assert curves[(days, group)] == pytest.approx(expected, abs=1e-9), (group, days)


def test_too_little_history_says_so(client: Any, database: str) -> None:
    estimate(client, database, 1, SimulationConfig(seed=1, days=40, sites=1, volume=4))
    # Forty days: patients came back (the curves have data), no 45-90 day window passed.
    curves = list(client.query(kaplan_meier_sql("1")).named_results())
    assert max(row["returned"] for row in curves) > 0.5
    assert _findings(client) == {}  # no visit's window has passed: no comparison at all
    assert client.query(headline_sql("1")).result_rows[0][0].startswith("Not enough history yet")


def test_loyalty_command_end_to_end(
    client: Any, clickhouse_dsn: str, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events -> journey logic -> sink -> migrated schema -> ``journeys loyalty --json``,
    equal to the same seed's estimate from the simulator's own truth."""
    from cli.main import main
    from runtime.config import Settings
    from simulator import simulate
    from sinks.migrate import migrate
    from sinks.rows import RowWriter
    from streams.assemble import offline_pipeline

    config = season(2, 1.5)
    expected = estimate(client, database, 2, config)
    piped = f"{database}_piped"
    try:
        migrate(client, piped)
        writer = RowWriter(client, piped)
        writer.write(offline_pipeline(Settings.model_construct()).run(simulate(config).lines).bundles)
        assert not writer.rejected
        capsys.readouterr()  # the migration's log lines
        assert main(["loyalty", "--json", "--dsn", clickhouse_dsn, "--database", piped]) == 0
        rows = {row["rule"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
        for name in ("rule", "exposed_visits", "unexposed_visits", "lapse_rate_exposed", "lapse_rate_unexposed",
                     "relative_risk", "ci_low", "ci_high", "patients_lost"):
            assert name in rows[ANY_FRICTION]
        found = rows[ANY_FRICTION]
        assert found["exposed_visits"] == expected.exposed_visits
        assert (found["relative_risk"], found["ci_low"], found["ci_high"]) == pytest.approx(
            (expected.relative_risk, expected.ci_low, expected.ci_high), rel=1e-9)
        assert main(["loyalty", "--dsn", clickhouse_dsn, "--database", piped, "--site", "nobody"]) == 0
        assert capsys.readouterr().out.startswith("Not enough history yet")
    finally:
        client.command(f"DROP DATABASE IF EXISTS {piped}")


def test_migration_0007_gives_the_visits_of_before_it_their_return(client: Any, database: str, tmp_path: Any) -> None:
    """Visits written before 0007 get their visit type (from the journey) and their return
    (the next completed visit 12 h or more later), each at its own version."""
    from sinks.migrate import discover, migrate

    before = tmp_path / "migrations"
    before.mkdir()
    for migration in discover():
        if migration.version < 7:
            (before / migration.path.name).write_text(migration.sql)
    migrate(client, database, directory=before)
    client.command(
        f"INSERT INTO {database}.patient_visits (patient_key, appointment_id, version, is_deleted, site_id,"
        " department, visit_at) VALUES"
        " ('p', 'A-1', 3, 0, 'north', 'cardiology', '2026-01-05 09:00:00'),"
        " ('p', 'A-2', 3, 0, 'north', 'cardiology', '2026-01-05 15:00:00'),"  # the same day: not a return
        " ('p', 'A-3', 2, 0, 'north', 'cardiology', '2026-01-26 09:00:00'),"
        " ('p', 'A-3', 3, 1, 'north', 'cardiology', '2026-01-26 09:00:00'),"  # deleted: not a return
        " ('p', 'A-4', 3, 0, 'north', 'cardiology', '2026-02-04 09:00:00')")
    client.command(
        f"INSERT INTO {database}.appointment_journeys (appointment_id, version, site_id, department, status,"
        " visit_type, scheduled_start, first_event_at, last_event_at) VALUES"
        " ('A-1', 5, 'north', 'cardiology', 'completed', 'new_patient', '2026-01-05 09:00:00', now(), now()),"
        " ('A-4', 5, 'north', 'cardiology', 'completed', 'follow_up', '2026-02-04 09:00:00', now(), now())")
    assert [m.version for m in migrate(client, database)] == [7]
    rows = client.query(f"SELECT appointment_id, version, visit_type, days_to_return FROM {database}.patient_visits"
                        " FINAL ORDER BY appointment_id").result_rows
    assert rows == [("A-1", 3, "new_patient", 30.0), ("A-2", 3, "", 29.75), ("A-4", 3, "follow_up", None)]
