"""``journeys sync``: wait until everything produced so far is in ClickHouse.

For a pipeline that runs on its own (``journeys up``, or ``journeys worker`` and
``journeys writer`` on Kubernetes) fed by other producers: sends an end-of-input marker
to every partition of every input topic and waits until the workers' and the writer's
acknowledgements of it are in ClickHouse. Never trusts end offsets or consumer lag.
With ``--final`` the end of input is also final for event time: the watermark jumps to
``--end`` (by default the latest ``occurred_at`` in ClickHouse once everything is in), so
silent no-shows up to that point are decided, as in a replay. When the writer holds embedded ClickHouse (chdb admits one
process), the acknowledgements are counted through the writer's HTTP ``/query``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from runtime.config import Settings, load_settings


def sync(settings: Settings, query: Callable[[str], str], final: bool, end_ms: int | None, timeout: float) -> str:
    """Send one marker and wait for all its acknowledgements; returns the marker id."""
    from sinks.markers import marker_count_sql
    from streams.markers import expected_marker_rows, new_marker_id, send_markers, wait_for_marker

    marker_id = new_marker_id()
    count_sql = marker_count_sql(settings.clickhouse_database, marker_id)
    send_markers(settings, settings.bootstrap, marker_id, final, end_ms)
    wait_for_marker(lambda: int(query(count_sql) or 0), expected_marker_rows(settings), timeout, progress=True)
    return marker_id


def run(args: argparse.Namespace) -> int:
    from schemas.timestamps import epoch_ms
    from sinks.migrate import quote_database
    from sinks.queries import read_only_queries

    settings = load_settings(bootstrap=args.bootstrap, clickhouse_dsn=args.clickhouse)
    end_ms = epoch_ms(datetime.fromisoformat(args.end)) if args.end else None
    with read_only_queries(settings, "TabSeparated") as query:
        def scalar(sql: str) -> str:
            return query(sql).decode().strip()

        # Two rounds. After the first, every event produced before it is processed, or sent
        # on to its appointment's partition (a producer that keyed it otherwise), ahead of
        # the second round's markers there. The end of input is also only known then: the
        # latest event of all partitions, which no single worker knows until everything is in.
        sync(settings, scalar, final=False, end_ms=None, timeout=args.timeout)
        if args.final and end_ms is None:
            latest = scalar(f"SELECT toUnixTimestamp64Milli(max(occurred_at)) "
                            f"FROM {quote_database(settings.clickhouse_database)}.events")
            end_ms = int(latest) if latest and latest != "\\N" else None
        marker_id = sync(settings, scalar, args.final, end_ms, args.timeout)
    print(f"caught up: marker {marker_id} acknowledged by every partition")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sync", help="wait until everything produced so far is in ClickHouse",
                                   description=__doc__)
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka (default: JOURNEYS_BOOTSTRAP)")
    parser.add_argument("--clickhouse", metavar="DSN", help="ClickHouse the writer writes (default: JOURNEYS_CLICKHOUSE_DSN)")
    parser.add_argument("--final", action="store_true", help="treat the end of input as final for event time")
    parser.add_argument("--end", metavar="TIMESTAMP", help="with --final: the end of input (RFC 3339 with offset)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    parser.set_defaults(run=run)
