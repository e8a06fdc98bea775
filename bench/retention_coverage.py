"""Does the retention estimate find friction's effect when there is one, and only then?

Simulates many seeds with a known causal effect of friction on patients leaving
(``--effect``, the simulator's ``friction_churn``), puts each seed's completed visits in
ClickHouse (chdb) as the per-patient journey writes them, runs the loyalty dashboard's own SQL
(:func:`dashboards.retention.findings_sql`), and prints how often the 95% interval of the
relative risk of lapsing after friction covers the effect that was set, and how often
it excludes 1 (finds an effect)::

    python bench/retention_coverage.py --seeds 40 --effect 1.5
    python bench/retention_coverage.py --seeds 40 --effect 1.0   # no effect: ~5% false finds

The visits come from the simulator's truth (what the pipeline computes, checked by the
end-to-end tests), not through a broker: this checks the statistics, fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboards.retention import ANY_FRICTION, findings_sql  # noqa: E402
from journey.patient import PatientState  # noqa: E402
from simulator import SimulationConfig  # noqa: E402
from simulator.run import simulate_days  # noqa: E402
from simulator.truth import TruthRules  # noqa: E402
from sinks.migrate import migrate  # noqa: E402


@dataclass(frozen=True, slots=True)
class Estimate:
    seed: int
    exposed_visits: int
    relative_risk: float | None
    ci_low: float | None
    ci_high: float | None

    def covers(self, effect: float) -> bool:
        return self.ci_low is not None and self.ci_high is not None and self.ci_low <= effect <= self.ci_high

    @property
    def finds_effect(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 1 or self.ci_high < 1)


def season(seed: int, effect: float, days: int = 150, sites: int = 1, volume: int = 4) -> SimulationConfig:
    """The simulated practice of one seed: long enough for return windows to pass."""
    return SimulationConfig(seed=seed, days=days, sites=sites, volume=volume, friction_churn=effect)


def visit_rows(config: SimulationConfig) -> list[dict[str, Any]]:
    """The completed visits of ``config`` as the per-patient journey writes them to
    patient_visits (its return included), from the simulator's truth."""
    patients: dict[str, PatientState] = defaultdict(PatientState)
    watermark = 0
    for day in simulate_days(config, TruthRules()):
        for record in day.settled:
            if record.status != "completed":
                continue
            watermark = max(watermark, record.scheduled_start_ms)
            patients[record.patient_id].update({
                "appointment_id": record.appointment_id, "version": 1, "patient_key": record.patient_id,
                "status": "completed", "scheduled_start": record.scheduled_start_ms,
                "friction_rules": sorted({hit.rule for hit in record.friction}), "site_id": record.site_id,
                "department": record.department, "provider_id": record.provider_id,
                "visit_type": record.visit_type,
            })
    rows = []
    for patient_key, state in patients.items():
        emission, _ = state.evaluate(patient_key, watermark)
        assert emission is not None
        rows.extend(emission.bundle["patient_visits"])
    return rows


def estimate(client: Any, database: str, seed: int, config: SimulationConfig) -> Estimate:
    """The 'any friction' finding of one seed, from the dashboards' SQL, on the migrated
    schema (created on first use, emptied for each seed)."""
    if not client.command("EXISTS DATABASE {db:Identifier}", parameters={"db": database}):
        migrate(client, database)
    client.command(f"TRUNCATE TABLE {database}.patient_visits")
    visits = visit_rows(config)
    columns = list(visits[0])
    client.insert(f"{database}.patient_visits", [
        [dt.datetime.fromtimestamp(row[c] / 1000, dt.UTC) if c == "visit_at" else row[c] for c in columns]
        for row in visits
    ], column_names=columns)
    client.database = database
    result = client.query(findings_sql("1"))
    for row in result.named_results():
        if row["rule"] == ANY_FRICTION:
            return Estimate(seed, row["exposed_visits"], row["relative_risk"], row["ci_low"], row["ci_high"])
    return Estimate(seed, 0, None, None, None)


def run(
    client: Any, seeds: Iterable[int], effect: float, database: str = "retention_check", **season_options: int
) -> list[Estimate]:
    return [estimate(client, database, seed, season(seed, effect, **season_options)) for seed in seeds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--effect", type=float, default=1.5, help="friction's multiplier on leaving (1: none)")
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--volume", type=int, default=4)
    args = parser.parse_args(argv)

    from sinks.client import connect

    with tempfile.TemporaryDirectory() as directory:
        client = connect(f"chdb://{directory}/clickhouse")
        started = time.monotonic()
        estimates = run(client, range(1, args.seeds + 1), args.effect,
                        days=args.days, sites=args.sites, volume=args.volume)
        elapsed = time.monotonic() - started
    print(f"{'seed':>5} {'exposed':>8} {'RR':>6} {'95% CI':>14}")
    for e in estimates:
        interval = "-" if e.ci_low is None else f"{e.ci_low:.2f}-{e.ci_high:.2f}"
        rr = "-" if e.relative_risk is None else f"{e.relative_risk:.2f}"
        print(f"{e.seed:>5} {e.exposed_visits:>8} {rr:>6} {interval:>14}")
    covered = sum(e.covers(args.effect) for e in estimates)
    found = sum(e.finds_effect for e in estimates)
    print(f"effect {args.effect}: interval covers it in {covered}/{len(estimates)} seeds "
          f"({covered / len(estimates):.0%}); finds an effect (excludes 1) in {found}/{len(estimates)} "
          f"({found / len(estimates):.0%}); {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
