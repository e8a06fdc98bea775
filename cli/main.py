"""The ``journeys`` console command: one entry point for every part of the pipeline.

Each sub-command lives in its own module that defines ``register(subparsers)``; the
module is imported only to build the parser, and a command imports its heavy
dependencies (Faust, ClickHouse) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from runtime.config import SettingsError

COMMAND_MODULES: tuple[str, ...] = (
    "cli.commands.schema",
    "cli.commands.validate",
    "cli.commands.produce",
    "cli.commands.broker",
    "cli.commands.simulate",
    "cli.commands.worker",
    "cli.commands.replay",
    "cli.commands.sync",
    "cli.commands.up",
    "cli.commands.demo",
    "cli.commands.clickhouse",
    "cli.commands.dashboards",
    "cli.commands.loyalty",
    "cli.commands.hl7",
    "cli.commands.fhir",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="journeys",
        description="Patient journey tracking: event contract, stream processors, ClickHouse sink, dashboards.",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks for known faults too")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def known_fault(error: BaseException) -> str | None:
    """The one line for a fault the user can fix (what failed and what to do), or ``None``
    for anything else: a bug, which keeps its traceback."""
    import errno

    from journey.friction import FrictionRuleError
    from sinks.client import ChdbBusyError, DsnError
    from sinks.migrate import MigrationError
    from streams.kafka_server import KafkaUnavailable
    from streams.produce import ProduceError
    from streams.topics import BrokerError, TopicMismatchError

    if isinstance(error, SettingsError):
        return f"configuration error: {error}"
    if isinstance(error, FrictionRuleError):
        return f"friction rules: {error} (JOURNEYS_FRICTION_RULES_FILE)"
    if isinstance(error, (BrokerError, TopicMismatchError, ProduceError)):
        return f"Kafka: {error} (JOURNEYS_BOOTSTRAP or --bootstrap)"
    if isinstance(error, KafkaUnavailable):
        return f"Apache Kafka: {error}"
    if isinstance(error, ChdbBusyError):
        return f"embedded ClickHouse: {error} (another journeys process holds it; query through its writer)"
    if isinstance(error, (DsnError, MigrationError)):
        return f"ClickHouse: {error} (JOURNEYS_CLICKHOUSE_DSN or --clickhouse)"
    if type(error).__module__.startswith("clickhouse_connect") and "OperationalError" in type(error).__name__:
        return f"ClickHouse unreachable: {str(error).splitlines()[0]} (JOURNEYS_CLICKHOUSE_DSN or --clickhouse)"
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return f"a port is in use: {error} (choose another with --port or the JOURNEYS_*_PORT setting)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # Client libraries log every failed connection attempt; the command says it once.
        for name in ("clickhouse_connect", "urllib3", "urllib3.connectionpool"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        line = known_fault(error)
        if line is None or args.debug:
            raise
        print(f"journeys {args.command}: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
