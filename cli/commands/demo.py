"""``journeys demo``: a simulated clinic day through the whole pipeline, then where patients met friction.

Starts the local broker, simulates a day of traffic (with duplicates, disorder and a
few invalid events), runs the stream workers and the ClickHouse writer into embedded
ClickHouse, then prints a friction summary and writes an HTML report whose charts come
from the dashboards' own SQL. With ``--source hl7`` the events HL7 v2 carries (scheduling,
check-in) go in as SIU/ADT messages over MLLP through the HL7 gateway, the rest as JSON.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.config import load_settings

if TYPE_CHECKING:
    from streams.pipeline import FeedCounts, LocalPipeline

SUMMARY_QUERIES: dict[str, str] = {
    "Worst sites by friction": """
        SELECT j.site_id AS site, count() AS appointments,
               countIf(j.friction_count > 0) AS with_friction,
               round(100 * with_friction / appointments, 1) AS friction_pct,
               sum(j.friction_count) AS friction_events
        FROM {db}.appointment_journeys AS j FINAL
        GROUP BY site ORDER BY friction_pct DESC, site LIMIT 5""",
    "Worst departments by friction": """
        SELECT j.site_id AS site, j.department AS department, count() AS appointments,
               round(100 * countIf(j.friction_count > 0) / appointments, 1) AS friction_pct,
               sum(j.friction_count) AS friction_events
        FROM {db}.appointment_journeys AS j FINAL
        GROUP BY site, department ORDER BY friction_pct DESC, site, department LIMIT 5""",
    "Worst providers by friction": """
        SELECT j.provider_id AS provider, any(j.site_id) AS site, count() AS appointments,
               round(100 * countIf(j.friction_count > 0) / appointments, 1) AS friction_pct,
               round(avgIf(j.provider_start_delay_min, j.provider_start_delay_min IS NOT NULL), 1) AS avg_start_delay_min
        FROM {db}.appointment_journeys AS j FINAL
        WHERE j.provider_id IS NOT NULL
        GROUP BY provider ORDER BY friction_pct DESC, provider LIMIT 5""",
    "Median waits (minutes)": """
        SELECT round(quantileExactIf(0.5)(lobby_wait_min, lobby_wait_min IS NOT NULL), 1) AS lobby_wait,
               round(quantileExactIf(0.5)(room_wait_min, room_wait_min IS NOT NULL), 1) AS room_wait,
               round(quantileExactIf(0.5)(cycle_time_min, cycle_time_min IS NOT NULL), 1) AS cycle_time,
               round(quantileExactIf(0.5)(virtual_wait_min, virtual_wait_min IS NOT NULL), 1) AS virtual_wait
        FROM {db}.appointment_journeys FINAL""",
    "Access": """
        SELECT count() AS appointments,
               round(100 * countIf(no_show = 1) / countIf(status NOT IN ('cancelled', 'late_cancelled')), 1) AS no_show_rate_pct,
               countIf(status = 'late_cancelled') AS late_cancellations,
               countIf(status = 'left_without_being_seen') AS left_without_being_seen
        FROM {db}.appointment_journeys FINAL""",
    "Friction by rule": """
        SELECT rule, count() AS hits, round(avg(value), 1) AS avg_value
        FROM {db}.friction_events FINAL GROUP BY rule ORDER BY hits DESC""",
}


def print_table(title: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


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
    from runtime.logs import configure_logging
    from schemas.eventfile import read_event_lines
    from simulator import SimulationConfig, simulate
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
    simulation = simulate(SimulationConfig(seed=args.seed, days=args.days, sites=args.sites, volume=args.volume,
                                           duplicate_fraction=0.02, out_of_order_fraction=0.05, late_fraction=0.01,
                                           invalid_fraction=0.002))
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
            result = client.query(sql.format(db=db))
            print_table(title, list(result.column_names), result.result_rows)
        time_from, time_to = data_time_range(client, settings.clickhouse_database)
        report = render_report(client, settings.clickhouse_database, Path(args.report), time_from, time_to)
        print(f"\nHTML report (the dashboards' panels, same SQL): {report.resolve()}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="simulate a clinic day through the whole pipeline and report friction",
                                   description=__doc__)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--volume", type=int, default=12, help="booked slots per provider-day")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=".journeys", help="where the demo keeps its files")
    parser.add_argument("--report", default="journeys-report.html", help="HTML report path")
    parser.add_argument("--source", choices=("json", "hl7"), default="json",
                        help="hl7: the scheduling and check-in events HL7 v2 carries go in as SIU/ADT messages "
                             "over MLLP through `journeys hl7 listen`'s gateway, the rest as JSON")
    parser.set_defaults(run=run)
