"""The ``journeys`` console command: one entry point for every part of the pipeline.

Each sub-command lives in its own module that defines ``register(subparsers)``; the
module is imported only to build the parser, and a command imports its heavy
dependencies (Faust, ClickHouse) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
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
    "cli.commands.hl7",
    "cli.commands.fhir",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="journeys",
        description="Patient journey tracking: event contract, stream processors, ClickHouse sink, dashboards.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SettingsError as error:
        print(f"journeys: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
