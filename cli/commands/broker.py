"""``journeys broker``: run a local Kafka-compatible broker (tansu, memory only) with the pipeline's topics.

Prints the bootstrap address as the first line of standard output (scripts can read
it), then runs until Ctrl-C or SIGTERM and stops the broker process::

    $ journeys broker --port 9092 --partitions 4
    127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("broker", help="run a local Kafka-compatible broker with the pipeline's topics")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: JOURNEYS_BOOTSTRAP's, 9092)")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per topic (default: JOURNEYS_PARTITIONS)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.logs import configure_logging
    from streams.broker import LocalBroker
    from streams.produce import quiet_kafka_clients
    from streams.topics import BrokerError

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    quiet_kafka_clients()
    port = args.port if args.port is not None else int(settings.bootstrap.split(",")[0].rpartition(":")[2])
    partitions = args.partitions if args.partitions is not None else settings.partitions

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGTERM (kubectl, systemd, CI) and Ctrl-C take the same clean path.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = LocalBroker(port=port, topics=settings.all_topics, partitions=partitions)
    try:
        broker.start()
    except BrokerError as error:
        print(f"journeys broker: {error}", file=sys.stderr)
        return 1
    try:
        print(broker.bootstrap, flush=True)
        print(f"topics ({partitions} partitions each): {', '.join(settings.all_topics)}", file=sys.stderr)
        print("broker running; Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            process = broker.process
            if process is not None and process.poll() is not None:
                print(f"journeys broker: tansu exited with code {process.returncode}", file=sys.stderr)
                return 1
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
