"""``journeys sync``: wait until everything produced so far is in ClickHouse.

For a pipeline that runs on its own (``journeys up``, or ``journeys worker`` and
``journeys writer`` on Kubernetes) fed by other producers: sends an end-of-input marker
to every partition of every input topic and waits until the workers' and the writer's
acknowledgements of it are in ClickHouse. Never trusts end offsets or consumer lag.
With ``--final`` the end of input is also final for event time: the watermark jumps to
``--end`` (or to the latest event each worker saw), so silent no-shows up to that point
are decided, as in a replay. When the writer holds embedded ClickHouse (chdb admits one
process), the acknowledgements are counted through the writer's HTTP ``/query``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from streams.config import Settings, load_settings


def acknowledgement_counter(settings: Settings, marker_id: str) -> Callable[[], int]:
    """Counts the marker's rows: directly, or through the writer when it holds chdb."""
    from sinks.client import ChdbBusyError, connect
    from sinks.commands import _query_via
    from sinks.markers import marker_rows
    from sinks.migrate import quote_database

    try:
        client = connect(settings.dsn)
    except ChdbBusyError:
        statement = (f"SELECT count() FROM {quote_database(settings.clickhouse_database)}.pipeline_markers FINAL "
                     f"WHERE marker_id = '{marker_id}'")
        writer = f"http://127.0.0.1:{settings.writer_port}"
        return lambda: int(_query_via(writer, statement, "TabSeparated").strip() or 0)
    return lambda: marker_rows(client, settings.clickhouse_database, marker_id)


def run(args: argparse.Namespace) -> int:
    from streams.journey.facts import epoch_ms
    from streams.pipeline import expected_marker_rows, new_marker_id, send_markers, wait_for_marker

    settings = load_settings(bootstrap=args.bootstrap, clickhouse_dsn=args.clickhouse)
    end_ms = epoch_ms(datetime.fromisoformat(args.end)) if args.end else None
    marker_id = new_marker_id()
    count = acknowledgement_counter(settings, marker_id)
    send_markers(settings, settings.bootstrap, marker_id, args.final, end_ms)
    wait_for_marker(count, expected_marker_rows(settings), args.timeout, progress=True)
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
