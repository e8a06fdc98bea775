"""``journeys up``: the whole pipeline running on this machine until Ctrl-C.

A local broker (unless ``--bootstrap``), ``--workers`` stream workers and the ClickHouse
writer into embedded ClickHouse (or ``--clickhouse DSN``). Others drive it from outside:
produce events to the family topics (``journeys produce FILE``, or any Kafka client,
key = ``appointment_id``), ``journeys sync --final`` to wait until everything is in
ClickHouse, ``journeys query "SELECT ..."`` to read it (through the writer while it holds
embedded ClickHouse).
"""

from __future__ import annotations

import argparse
import signal
import threading

from runtime.config import load_settings


def run(args: argparse.Namespace) -> int:
    from runtime.logs import configure_logging
    from streams.pipeline import LocalPipeline

    port = args.port
    settings = load_settings(clickhouse_dsn=args.clickhouse, partitions=args.partitions,
                             session_timeout_s=3.0 if args.bootstrap is None else None)
    configure_logging(settings.log_format, "WARNING")
    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    broker_port = {} if port is None else {"port": port}
    with LocalPipeline(settings, bootstrap=args.bootstrap, workers=args.workers, writer_http=True,
                       **broker_port) as pipeline:
        print(f"bootstrap:  {pipeline.bootstrap}", flush=True)
        print(f"clickhouse: {settings.dsn} (database {settings.clickhouse_database})", flush=True)
        print(f"writer:     http://127.0.0.1:{settings.writer_port} (/healthz /readyz /metrics /query)", flush=True)
        print(f"then: journeys produce FILE --bootstrap {pipeline.bootstrap}; "
              f"JOURNEYS_BOOTSTRAP={pipeline.bootstrap} journeys sync --final; journeys query 'SELECT ...'",
              flush=True)
        print("running; Ctrl-C stops it", flush=True)
        while not stop.wait(1.0):
            pipeline.check_alive()
        print("stopping ...", flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="run broker, stream workers and ClickHouse writer until Ctrl-C",
                                   description=__doc__)
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="an existing Kafka (default: start a local broker)")
    parser.add_argument("--port", type=int, help="port of the local broker (default: a free port)")
    parser.add_argument("--clickhouse", metavar="DSN", help="default: JOURNEYS_CLICKHOUSE_DSN, else embedded")
    parser.add_argument("--workers", type=int, default=1, help="stream worker processes (default 1)")
    parser.add_argument("--partitions", type=int, help="partitions per topic (default: JOURNEYS_PARTITIONS)")
    parser.set_defaults(run=run)
