"""``journeys produce FILE``: send a JSON Lines event file to Kafka, each event to its family's topic.

Keyed by ``appointment_id``; lines that cannot be routed go to the dead-letter topic
with headers ``reason``, ``detail``, ``origin_file``, ``origin_line``. Prints the count
per topic::

    $ journeys produce events.jsonl --bootstrap 127.0.0.1:9092
    journey.scheduling: 2631
    ...
    total: 10000 (unroutable, sent to journey.deadletter: 1)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("produce", help="send a JSON Lines event file to the family topics")
    parser.add_argument("file", metavar="FILE", help="JSON Lines file, one event per line ('-' for stdin)")
    parser.add_argument("--bootstrap", default=None, help="HOST:PORT[,...] (default: JOURNEYS_BOOTSTRAP)")
    parser.add_argument(
        "--create-topics", action="store_true", help="create missing topics (JOURNEYS_PARTITIONS partitions each)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _count_lines(path: str) -> int | None:
    # Sizes the progress bar; ~0.1 s per million lines, worth it for a useful ETA.
    if path == "-":
        return None
    count = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.logs import configure_logging
    from schemas.eventfile import read_event_lines
    from streams.produce import ProduceError, produce_events, quiet_kafka_clients
    from streams.topics import BrokerError, ensure_topics, topic_partitions

    settings = load_settings(bootstrap=args.bootstrap)
    configure_logging(settings.log_format, settings.log_level)
    quiet_kafka_clients()
    needed = (*settings.input_topics, settings.topic_deadletter)
    try:
        if args.create_topics:
            ensure_topics(settings.bootstrap, needed, settings.partitions, settings.replication_factor)
        else:
            # Brokers that auto-create topics would otherwise make them with their own
            # partition count, silently breaking co-partitioning by appointment_id.
            missing = sorted(set(needed) - set(topic_partitions(settings.bootstrap, needed)))
            if missing:
                print(
                    f"journeys produce: missing topics on {settings.bootstrap}: {', '.join(missing)} "
                    "(use --create-topics, or `journeys broker` for a local broker)",
                    file=sys.stderr,
                )
                return 1
        total = None if args.no_progress else _count_lines(args.file)
        result = produce_events(
            read_event_lines(args.file),
            settings.bootstrap,
            topics=settings.topics,
            progress=not args.no_progress,
            deadletter_topic=settings.topic_deadletter,
            origin_file=args.file,
            total=total,
            output_topic=settings.topic_output,
        )
    except OSError as error:
        print(f"journeys produce: cannot read {args.file}: {error.strerror or error}", file=sys.stderr)
        return 2
    except BrokerError as error:
        print(f"journeys produce: {error} (JOURNEYS_BOOTSTRAP or --bootstrap)", file=sys.stderr)
        return 2
    except ProduceError as error:
        print(f"journeys produce: {error}", file=sys.stderr)
        return 1
    for topic in (*settings.input_topics, settings.topic_deadletter):
        print(f"{topic}: {result.counts.get(topic, 0)}")
    print(f"total: {result.total} (unroutable, sent to {settings.topic_deadletter}: {result.unroutable})")
    if result.unroutable:
        # Lines that are events but invalid reach their family topic and are dead-lettered by
        # the workers; these have no topic at all. `journeys validate FILE` lists every bad line.
        print(f"journeys produce: {result.unroutable} lines have no family topic (see journeys validate "
              f"{args.file}); they are in {settings.topic_deadletter} and journeys.deadletters", file=sys.stderr)
        return 1
    return 0
