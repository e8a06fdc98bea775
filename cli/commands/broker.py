"""``journeys broker``: a local broker with the pipeline's topics, until Ctrl-C or SIGTERM.

By default the embedded Kafka-compatible broker (tansu, memory only, nothing to install);
with ``--kafka`` a real Apache Kafka 4.x KRaft node (needs Java 17 and Maven: the jars come
from Maven Central once, into ``~/.cache/journeys``), keeping its data in ``--data-dir``.
Prints the bootstrap address as the first line of standard output (scripts can read it)::

    $ journeys broker --port 9092 --partitions 4
    127.0.0.1:9092
    $ journeys broker --kafka --data-dir kafka-data
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("broker", help="run a local broker (tansu, or --kafka) with the pipeline's topics",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: JOURNEYS_BOOTSTRAP's, 9092)")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per topic (default: JOURNEYS_PARTITIONS)")
    parser.add_argument("--kafka", action="store_true", help="a real Apache Kafka 4.x node instead of tansu")
    parser.add_argument("--data-dir", type=Path, default=None, help="with --kafka: keep its data here (default: a "
                        "temporary directory, removed on exit)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.logs import configure_logging
    from streams.broker import LocalBroker
    from streams.kafka_server import KafkaServer, KafkaUnavailable
    from streams.produce import quiet_kafka_clients
    from streams.topics import BrokerError, ensure_topics

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
    broker: LocalBroker | KafkaServer
    broker = (KafkaServer(port=port, data_dir=args.data_dir, partitions=partitions) if args.kafka
              else LocalBroker(port=port, topics=settings.all_topics, partitions=partitions))
    try:
        broker.start()
        ensure_topics(broker.bootstrap, settings.all_topics, partitions)
    except (BrokerError, KafkaUnavailable) as error:
        print(f"journeys broker: {error}", file=sys.stderr)
        broker.stop()
        return 2
    try:
        print(broker.bootstrap, flush=True)
        print(f"{broker.kind} pid={broker.pid}: topics ({partitions} partitions each): "
              f"{', '.join(settings.all_topics)}", file=sys.stderr)
        print("broker running; Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not broker.running:
                print(f"journeys broker: {broker.kind} exited", file=sys.stderr)
                return 1
        return 0
    finally:
        broker.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
