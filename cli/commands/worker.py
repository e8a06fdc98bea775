"""``journeys worker``: run the stream processors (a Faust worker) until stopped."""

from __future__ import annotations

import argparse
import gc
import sys

from runtime.config import Settings, load_settings


def check_topics(settings: Settings) -> None:
    """Create missing topics; refuse to run when partition counts differ (co-partitioning)."""
    from streams.topics import TopicMismatchError, ensure_pipeline_topics

    try:
        ensure_pipeline_topics(settings)
    except TopicMismatchError as error:
        raise SystemExit(
            f"journeys worker: refusing to start: {error}. Every input, patient-updates, output and changelog "
            f"topic must have JOURNEYS_PARTITIONS={settings.partitions} partitions so that one appointment's "
            "events meet in one worker."
        ) from None


def run(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from runtime.logs import configure_logging
    from streams.worker import create_app

    settings = load_settings(bootstrap=args.bootstrap, web_port=args.web_port)
    configure_logging(settings.log_format, settings.log_level)
    check_topics(settings)
    app = create_app(settings)
    # A batch allocates tens of thousands of short-lived, acyclic rows: the default
    # collector thresholds make it rescan them over and over (measured ~30% of the time).
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run the journey stream processors (Faust worker)",
                                   description=__doc__)
    parser.add_argument("--bootstrap", help="Kafka bootstrap HOST:PORT (default: JOURNEYS_BOOTSTRAP)")
    parser.add_argument("--web-port", type=int, help="HTTP port for /healthz /readyz /metrics")
    parser.set_defaults(run=run)


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(bootstrap=None, web_port=None)))
