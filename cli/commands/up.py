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
    from streams.pipeline import LocalPipeline, Supervisor
    from streams.produce import quiet_kafka_clients

    port = args.port
    settings = load_settings(clickhouse_dsn=args.clickhouse, partitions=args.partitions,
                             session_timeout_s=3.0 if args.bootstrap is None else None)
    configure_logging(settings.log_format, "WARNING")
    quiet_kafka_clients()  # a broker that went away is said once, below, not 75 times a second
    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    broker_port = {} if port is None else {"port": port}
    pipeline = LocalPipeline(settings, bootstrap=args.bootstrap, workers=args.workers, writer_http=True, **broker_port)
    with pipeline:
        print(f"bootstrap:  {pipeline.bootstrap}", flush=True)
        print(f"clickhouse: {settings.dsn} (database {settings.clickhouse_database})", flush=True)
        print(f"writer:     http://127.0.0.1:{settings.writer_port} (/healthz /readyz /metrics /query)", flush=True)
        for index, worker in enumerate(pipeline.workers):
            print(f"worker {index}:   http://127.0.0.1:{worker.web_port} (/healthz /readyz /metrics)", flush=True)
        print(f"logs:       {pipeline.run_dir}", flush=True)
        print(f"then: journeys produce FILE --bootstrap {pipeline.bootstrap}; "
              f"JOURNEYS_BOOTSTRAP={pipeline.bootstrap} journeys sync --final; journeys query 'SELECT ...'",
              flush=True)
        print("running; Ctrl-C stops it", flush=True)
        supervisor = Supervisor(pipeline, say=lambda line: print(f"journeys up: {line}", flush=True))
        failure = None
        while failure is None and not stop.wait(1.0):
            failure = supervisor.tick()
        if failure is not None:
            print(f"journeys up: {failure}", flush=True)
        print("stopping ...", flush=True)
        # A worker killed after a few seconds loses nothing (offsets are committed only for
        # finished batches): no reason to wait for a slow shutdown, e.g. with the broker gone.
        try:
            pipeline.stop(timeout=5.0)
        except RuntimeError as error:  # a part that could not stop cleanly: said, not a traceback
            print(f"journeys up: while stopping: {str(error).splitlines()[0]}", flush=True)
    return 0 if failure is None else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="run broker, stream workers and ClickHouse writer until Ctrl-C",
                                   description=__doc__)
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="an existing Kafka (default: start a local broker)")
    parser.add_argument("--port", type=int, help="port of the local broker (default: a free port)")
    parser.add_argument("--clickhouse", metavar="DSN", help="default: JOURNEYS_CLICKHOUSE_DSN, else embedded")
    parser.add_argument("--workers", type=int, default=1, help="stream worker processes (default 1)")
    parser.add_argument("--partitions", type=int, help="partitions per topic (default: JOURNEYS_PARTITIONS)")
    parser.set_defaults(run=run)
