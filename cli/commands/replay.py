"""``journeys replay FILE.jsonl``: the whole pipeline over a file, end of input treated as final.

Events go through a real broker (a local one unless ``--bootstrap``), the stream
workers and the ClickHouse writer; the command waits until everything is in ClickHouse,
prints the counts and exits 0, or 1 when some lines were invalid (their reasons are counted;
``journeys validate FILE`` lists them). The watermark at the end is the largest ``occurred_at``
of the file, so silent no-shows up to that point are decided. Replaying the same
file again into the same ClickHouse leaves the same rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.config import load_settings


def run(args: argparse.Namespace) -> int:
    from runtime.logs import configure_logging
    from schemas.eventfile import read_event_lines
    from sinks.migrate import quote_database
    from streams.pipeline import LocalPipeline

    settings = load_settings(clickhouse_dsn=args.clickhouse, partitions=args.partitions,
                             session_timeout_s=3.0 if args.bootstrap is None else None)
    configure_logging("console" if sys.stderr.isatty() else settings.log_format, "WARNING")
    path = Path(args.file)
    if not path.is_file():
        print(f"journeys replay: no such file: {path}", file=sys.stderr)
        return 2
    total = sum(1 for _ in read_event_lines(path))
    with LocalPipeline(settings, bootstrap=args.bootstrap, workers=args.workers) as pipeline:
        counts = pipeline.feed(read_event_lines(path), origin=path.name, progress=not args.quiet, total=total)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, timeout=args.timeout,
                                      progress=not args.quiet)
        metrics = pipeline.worker_metrics()
        db = quote_database(settings.clickhouse_database)
        journeys = pipeline.client.command(f"SELECT count() FROM {db}.appointment_journeys FINAL")
        stored_events = pipeline.client.command(f"SELECT count() FROM {db}.events FINAL")
    duplicates = int(metrics.get("journeys_duplicates_total", 0))
    print(f"read:           {counts.read}")
    print(f"valid:          {counts.valid}")
    print(f"dead-lettered:  {counts.dead_lettered}" + (
        f"  ({', '.join(f'{reason} {n}' for reason, n in sorted(counts.invalid.items()))})" if counts.invalid else ""))
    print(f"duplicates:     {duplicates}")
    print(f"this file:      {len(counts.appointments)} appointments")
    print(f"ClickHouse now: {journeys} appointments, {stored_events} distinct events (every run so far)")
    # Like `journeys validate`: a file with invalid lines is not a clean success.
    return 1 if counts.dead_lettered else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="run the whole pipeline over an event file into ClickHouse",
                                   description=__doc__)
    parser.add_argument("file", help="JSON Lines event file")
    parser.add_argument("--clickhouse", metavar="DSN", help="chdb:///path or http(s)://user:pass@host:8123/db "
                        "(default: JOURNEYS_CLICKHOUSE_DSN, else embedded under JOURNEYS_DATA_DIR)")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="an existing Kafka (default: start a local broker)")
    parser.add_argument("--workers", type=int, default=1, help="stream worker processes (default 1)")
    parser.add_argument("--partitions", type=int, help="partitions per topic (default: JOURNEYS_PARTITIONS)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the pipeline")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=run)
