"""``journeys demo``: four simulated months of clinics through the whole pipeline, then where patients met friction.

Starts the local broker, simulates 120 clinic days at two sites (with duplicates,
disorder and a few invalid events; patients keep their care cadence and some leave,
more often after friction), runs the stream workers and the ClickHouse writer into
embedded ClickHouse, then prints a friction summary and what friction costs in patients
who do not come back, and writes an HTML report whose charts come from the dashboards'
own SQL. With ``--source hl7`` the events HL7 v2 carries (scheduling,
check-in) go in as SIU/ADT messages over MLLP through the HL7 gateway, the rest as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.config import load_settings

if TYPE_CHECKING:
    from simulator import SimulationConfig
    from streams.pipeline import FeedCounts, LocalPipeline

DEFAULT_DAYS = 120

SUMMARY_QUERIES: dict[str, str] = {
    "Worst sites by friction": """
        SELECT j.site_id AS Site, count() AS Appointments,
               countIf(j.friction_count > 0) AS "With friction",
               round(100 * "With friction" / Appointments, 1) AS "With friction %",
               sum(j.friction_count) AS "Friction events"
        FROM {db}.appointment_journeys AS j FINAL
        GROUP BY Site ORDER BY "With friction %" DESC, Site LIMIT 5""",
    "Worst departments by friction": """
        SELECT j.site_id AS Site, j.department AS Department, count() AS Appointments,
               round(100 * countIf(j.friction_count > 0) / Appointments, 1) AS "With friction %",
               sum(j.friction_count) AS "Friction events"
        FROM {db}.appointment_journeys AS j FINAL
        GROUP BY Site, Department ORDER BY "With friction %" DESC, Site, Department LIMIT 5""",
    "Worst providers by friction": """
        SELECT j.provider_id AS Provider, any(j.site_id) AS Site, count() AS Appointments,
               round(100 * countIf(j.friction_count > 0) / Appointments, 1) AS "With friction %",
               round(avgIf(j.provider_start_delay_min, j.provider_start_delay_min IS NOT NULL), 1)
                   AS "Mean start delay (min)"
        FROM {db}.appointment_journeys AS j FINAL
        WHERE j.provider_id IS NOT NULL
        GROUP BY Provider ORDER BY "With friction %" DESC, Provider LIMIT 5""",
    "Median waits (minutes)": """
        SELECT round(quantileExactIf(0.5)(lobby_wait_min, lobby_wait_min IS NOT NULL), 1) AS Lobby,
               round(quantileExactIf(0.5)(room_wait_min, room_wait_min IS NOT NULL), 1) AS "Exam room",
               round(quantileExactIf(0.5)(cycle_time_min, cycle_time_min IS NOT NULL), 1) AS "Cycle time",
               round(quantileExactIf(0.5)(virtual_wait_min, virtual_wait_min IS NOT NULL), 1) AS "Virtual waiting room"
        FROM {db}.appointment_journeys FINAL""",
    "Access": """
        SELECT count() AS Appointments,
               round(100 * countIf(no_show = 1) / countIf(status NOT IN ('cancelled', 'late_cancelled')), 1)
                   AS "No-show rate %",
               countIf(status = 'late_cancelled') AS "Late cancellations",
               countIf(status = 'left_without_being_seen') AS "Left without being seen"
        FROM {db}.appointment_journeys FINAL""",
    # Yes/no rules (no-show, late cancellation, ...) have no measured value worth showing.
    "Friction by rule": """
        SELECT {rule_label} AS Rule, count() AS Hits,
               if(rule IN ({yes_no}), '', toString(round(quantileExact(0.5)(value), 1))) AS "Median value",
               {rule_limit} AS "Limit"
        FROM {db}.friction_events FINAL GROUP BY rule ORDER BY Hits DESC, Rule""",
}


def demo_config(seed: int = 7, days: int = DEFAULT_DAYS, sites: int = 2, volume: int = 4) -> SimulationConfig:
    """What the demo simulates (the README's pictures are of it, ``tests/test_report_browser.py``).

    Delivered a little badly (duplicates, disorder, late and invalid events), and stopped on
    the last day at 13:50 UTC, in the morning clinics (09:50 in New York, 08:50 in
    Chicago): the report is a live snapshot, with patients waiting now.

    >>> config = demo_config(days=3)
    >>> config.days, config.cutoff.isoformat()
    (3, '2026-03-04T13:50:00+00:00')
    """
    from simulator import SimulationConfig

    start = dt.date(2026, 3, 2)
    last_day = start + dt.timedelta(days=days - 1)
    return SimulationConfig(
        seed=seed, days=days, sites=sites, volume=volume, start=start,
        duplicate_fraction=0.02, out_of_order_fraction=0.05, late_fraction=0.01, invalid_fraction=0.002,
        cutoff=dt.datetime.combine(last_day, dt.time(13, 50), tzinfo=dt.UTC),
    )


def print_table(title: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


def print_loyalty(client: Any, database: str) -> None:
    """What friction costs in patients who do not come back (``journeys loyalty``'s table)."""
    from cli.commands.loyalty import findings, render
    from dashboards.query import default_database

    with default_database(client, database):
        found, headline = findings(lambda sql: list(client.query(sql).named_results()), "1")
    print("\nDoes friction cost us patients? (journeys loyalty)")
    print("  " + render(found, headline).replace("\n", "\n  ").rstrip())


def feed_over_hl7(pipeline: LocalPipeline, lines: Sequence[bytes], chunks: int = 12) -> FeedCounts:
    """Send the events HL7 v2 carries as SIU/ADT messages over MLLP to an HL7 gateway on the
    pipeline (each one acknowledged AA only once Kafka took it), the others as contract JSON.

    In delivery order, in ``chunks`` rounds of HL7 then JSON: the two feeds advance together,
    as a clinic's HL7 interface and its other systems would.
    """
    import orjson

    from schemas.decode import Rejected, decode
    from schemas.timestamps import epoch_ms
    from sources import load_source
    from sources.hl7.client import MLLPClient
    from sources.render import hl7_carries, render_hl7
    from streams.gateway import GatewayThread
    from streams.pipeline import FeedCounts

    total = FeedCounts()
    over_hl7 = 0
    size = max(1, -(-len(lines) // chunks))
    with GatewayThread("hl7", pipeline.settings, load_source("hl7", {"name": "hl7-demo"})) as gateway, \
            MLLPClient(*gateway.address) as client:
        print(f"      HL7 v2 gateway (MLLP) on {gateway.address[0]}:{gateway.address[1]}", flush=True)
        for start in range(0, len(lines), size):
            as_json: list[tuple[int, bytes]] = []
            for number, raw in enumerate(lines[start:start + size], start=start + 1):
                verdict = decode(raw)
                if isinstance(verdict, Rejected) or not hl7_carries(event := orjson.loads(raw)):
                    as_json.append((number, raw))
                    continue
                ack = client.send(render_hl7(event))
                if ack.code != "AA":
                    raise RuntimeError(f"line {number}: the HL7 gateway answered {ack.code}: {ack.text}")
                over_hl7 += 1
                occurred = epoch_ms(verdict.occurred_at)
                total.max_occurred_ms = max(total.max_occurred_ms or occurred, occurred)
            counts = pipeline.feed(as_json, origin="demo-events.jsonl", progress=False)
            total.read += counts.read
            total.valid += counts.valid
            total.invalid.update(counts.invalid)
            if counts.max_occurred_ms is not None:
                total.max_occurred_ms = max(total.max_occurred_ms or counts.max_occurred_ms, counts.max_occurred_ms)
    total.read += over_hl7
    total.valid += over_hl7
    print(f"      {over_hl7} events as HL7 v2 messages over MLLP (all acknowledged AA), "
          f"{total.read - over_hl7} as contract JSON", flush=True)
    return total


def run(args: argparse.Namespace) -> int:
    from dashboards.query import data_time_range
    from dashboards.report import render_report
    from dashboards.rules import RULE_LABEL, RULE_LIMIT, YES_NO_RULES
    from runtime.logs import configure_logging
    from schemas.eventfile import read_event_lines
    from simulator import simulate
    from simulator.world import build_world
    from sinks.migrate import quote_database
    from streams.pipeline import LocalPipeline

    started = time.monotonic()
    data_dir = Path(args.data_dir)
    clickhouse_dir = data_dir / "demo-clickhouse"
    shutil.rmtree(clickhouse_dir, ignore_errors=True)
    settings = load_settings(data_dir=data_dir, clickhouse_dsn=f"chdb:///{clickhouse_dir.resolve()}",
                             session_timeout_s=3.0)
    configure_logging("console", "WARNING")
    data_dir.mkdir(parents=True, exist_ok=True)
    events_path = data_dir / "demo-events.jsonl"
    print(f"[1/4] simulating {args.days} clinic day(s) at {args.sites} sites (seed {args.seed}) ...", flush=True)
    config = demo_config(seed=args.seed, days=args.days, sites=args.sites, volume=args.volume)
    simulation = simulate(config)
    events_path.write_bytes(b"\n".join(simulation.lines) + b"\n")
    print(f"      {len(simulation.lines)} events -> {events_path}", flush=True)
    print("[2/4] starting the local broker, a stream worker and the ClickHouse writer ...", flush=True)
    with LocalPipeline(settings) as pipeline:
        print(f"      broker {pipeline.bootstrap}; ClickHouse {clickhouse_dir}", flush=True)
        print("[3/4] streaming the events through the pipeline ...", flush=True)
        if args.source == "hl7":
            counts = feed_over_hl7(pipeline, simulation.lines)
        else:
            counts = pipeline.feed(read_event_lines(events_path), origin=events_path.name, total=len(simulation.lines))
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms)
        client = pipeline.client
        db = quote_database(settings.clickhouse_database)
        print(f"      {counts.valid} valid events, {counts.dead_lettered} dead-lettered, "
              f"{int(pipeline.worker_metrics().get('journeys_duplicates_total', 0))} duplicates ignored", flush=True)
        print("[4/4] friction summary", flush=True)
        for title, sql in SUMMARY_QUERIES.items():
            result = client.query(sql.format(db=db, yes_no=YES_NO_RULES, rule_label=RULE_LABEL,
                                             rule_limit=f"any({RULE_LIMIT})"))
            print_table(title, list(result.column_names), result.result_rows)
        print_loyalty(client, settings.clickhouse_database)
        time_from, time_to = data_time_range(client, settings.clickhouse_database)
        # The simulated sites' own zones (unless JOURNEYS_SITE_TIME_ZONES says otherwise);
        # "now" is where the simulated world stopped, and each dashboard shows its own range
        # up to it (operations: today; loyalty: 180 days), as Grafana would open them.
        zones = {site.site_id: site.tz.key for site in build_world(config).sites} | settings.site_time_zones
        report = render_report(client, settings.clickhouse_database, Path(args.report), time_from, time_to,
                               time_zones=zones, now=config.cutoff, dashboard_ranges=True)
        print(f"\nHTML report (the dashboards' panels, same SQL): {report.resolve()}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="simulate four months of clinics through the whole pipeline and report friction",
                                   description=__doc__)
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS,
                        help=f"clinic days (default {DEFAULT_DAYS}: long enough for patients' return windows to "
                             "pass, so the loyalty findings have history)")
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--volume", type=int, default=4, help="booked slots per provider-day (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=".journeys", help="where the demo keeps its files")
    parser.add_argument("--report", default="journeys-report.html", help="HTML report path")
    parser.add_argument("--source", choices=("json", "hl7"), default="json",
                        help="hl7: the scheduling and check-in events HL7 v2 carries go in as SIU/ADT messages "
                             "over MLLP through `journeys hl7 listen`'s gateway, the rest as JSON")
    parser.set_defaults(run=run)
