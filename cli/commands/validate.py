"""``journeys validate FILE``: check every line of a JSON Lines event file against contract v1.

Prints ``line N: <reason> <detail>`` for each invalid line, then a summary; exits 0
only when every line is valid (1 otherwise, 2 when the file cannot be read)::

    $ journeys validate events.jsonl
    line 7: naive_timestamp occurred_at: timestamp has no UTC offset
    checked 10 events: 9 valid, 1 invalid
      naive_timestamp: 1
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from schemas.decode import REASONS, Rejected, decode
from schemas.eventfile import read_event_lines


@dataclass
class ValidationSummary:
    """What :func:`validate_file` found: counts of valid lines and of each reason."""

    valid: int = 0
    invalid: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.valid + sum(self.invalid.values())

    @property
    def ok(self) -> bool:
        return not self.invalid


def validate_file(
    source: Any, out: TextIO, topic: str | None = None, max_errors: int | None = None
) -> ValidationSummary:
    """Decode every line of ``source``; write one line per invalid event to ``out``.

    ``topic`` checks that every event belongs on that topic (default topic names).
    ``max_errors`` stops *printing* after that many invalid lines (counting goes on).
    """
    summary = ValidationSummary()
    invalid = summary.invalid
    printed = 0
    write = out.write  # bound once: this loop runs a million times on a big file
    for number, raw in read_event_lines(source):
        verdict = decode(raw, topic=topic)
        if verdict.__class__ is Rejected:
            invalid[verdict.reason] += 1  # type: ignore[union-attr]
            if max_errors is None or printed < max_errors:
                write(f"line {number}: {verdict.reason} {verdict.detail}\n")  # type: ignore[union-attr]
                printed += 1
        else:
            summary.valid += 1
    return summary


def format_summary(summary: ValidationSummary) -> str:
    lines = [f"checked {summary.total} events: {summary.valid} valid, {sum(summary.invalid.values())} invalid"]
    # Contract order, not count order: the same file always prints the same summary.
    lines += [f"  {reason}: {summary.invalid[reason]}" for reason in REASONS if summary.invalid[reason]]
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("validate", help="check a JSON Lines event file against the wire contract")
    parser.add_argument("file", metavar="FILE", help="JSON Lines file, one event per line ('-' for stdin)")
    parser.add_argument("--topic", help="also check that every event belongs on this topic")
    parser.add_argument(
        "--max-errors", type=int, default=None, metavar="N", help="print at most N invalid lines (all are counted)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = sys.stdout  # block-buffered when redirected, which is where a big report goes
    try:
        summary = validate_file(args.file, out, topic=args.topic, max_errors=args.max_errors)
    except OSError as error:
        out.flush()
        print(f"journeys validate: cannot read {args.file}: {error.strerror or error}", file=sys.stderr)
        return 2
    out.write(format_summary(summary) + "\n")
    out.flush()
    return 0 if summary.ok else 1
