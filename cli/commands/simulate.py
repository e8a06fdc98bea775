"""``journeys simulate``: realistic clinic traffic to a file or a broker, with its truth.

::

    $ journeys simulate --seed 7 --days 14 --sites 3 --out events.jsonl --truth truth.jsonl
    $ journeys simulate --days 1 --bootstrap 127.0.0.1:9092 --speed 60   # live demo pace

Lines come in delivery order (duplicates, disorder, late and invalid lines as asked).
The truth file is JSON Lines with a ``record`` field: ``appointment`` (every metric of
METRICS.md), ``patient`` (per-patient figures), ``departure`` (a patient who left the
practice after a visit: the friction it had, the chance of leaving with and without it),
``invalid_line`` (line number and the reason ``decode()`` gives) and a final ``summary``
(watermark, counts, config).

Friction's effect on patients leaving is set with ``--friction-churn X`` (every rule) and
``--friction-churn-file F``, a YAML mapping of rule names or severities to multipliers::

    lobby_wait: 2.0
    high: 1.8
Instants in the truth are ISO 8601 UTC strings with milliseconds, and epoch ms in the
``*_ms`` twin fields.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, Any

import orjson

RELEASE_EVERY = 10_000  # lines buffered per write: one syscall per batch, not per line


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="generate realistic clinic traffic (to a file or the broker) and its expected metrics",
        description=__doc__.split("::")[0].strip(),
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed; same seed, same bytes (default 1)")
    parser.add_argument("--days", type=int, default=7, help="visit days to simulate (default 7)")
    parser.add_argument("--sites", type=int, default=3, help="clinic sites (default 3)")
    parser.add_argument("--volume", type=int, default=12, help="booked slots per provider-day (default 12)")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 3, 2),
                        metavar="YYYY-MM-DD", help="first visit day (default 2026-03-02)")
    parser.add_argument("--duplicate-fraction", type=float, default=0.0, metavar="F",
                        help="share of events re-sent verbatim (0..0.5)")
    parser.add_argument("--out-of-order-fraction", type=float, default=0.0, metavar="F",
                        help="share of events delivered 1-20 min late (0..0.5)")
    parser.add_argument("--late-fraction", type=float, default=0.0, metavar="F",
                        help="share of events delivered 1-12 h after they occurred (0..0.5)")
    parser.add_argument("--invalid-fraction", type=float, default=0.0, metavar="F",
                        help="chance per event of an extra corrupted line (0..0.5)")
    parser.add_argument("--cutoff", type=dt.datetime.fromisoformat, default=None, metavar="TIMESTAMP",
                        help="stop the world at this RFC 3339 instant (in-progress journeys at the end)")
    parser.add_argument("--friction-churn", type=float, default=1.5, metavar="X",
                        help="a visit with friction multiplies the chance the patient leaves by X (default 1.5)")
    parser.add_argument("--friction-churn-file", metavar="YAML", default=None,
                        help="per friction rule or severity: that multiplier (rule: X per line)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE", help="write JSON Lines here ('-' for stdout)")
    target.add_argument("--bootstrap", metavar="HOST:PORT", help="produce to this Kafka broker's family topics")
    parser.add_argument("--speed", type=float, default=None, metavar="X",
                        help="with --bootstrap: pace at X times real time from the start day on "
                             "(60 = one simulated minute per second); the booking backlog goes at once")
    parser.add_argument("--truth", metavar="FILE", help="write the expected metrics here (JSON Lines)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _config(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from simulator import SimulationConfig
    from simulator.churn import ChurnModel
    from simulator.truth import TruthRules

    options = {
        "seed": args.seed, "days": args.days, "sites": args.sites, "volume": args.volume, "start": args.start,
        "duplicate_fraction": args.duplicate_fraction, "out_of_order_fraction": args.out_of_order_fraction,
        "late_fraction": args.late_fraction, "invalid_fraction": args.invalid_fraction, "cutoff": args.cutoff,
        "friction_churn": args.friction_churn,
    }
    if args.friction_churn_file is not None:
        import yaml

        try:
            with open(args.friction_churn_file, encoding="utf-8") as file:
                options["friction_churn_rules"] = yaml.safe_load(file) or {}
        except (OSError, yaml.YAMLError) as error:
            print(f"journeys simulate: --friction-churn-file: {error}", file=sys.stderr)
            return None
    try:
        config = SimulationConfig(**options)
        ChurnModel(config, TruthRules())  # names every rule and severity it does not know
        return config
    except ValueError as error:
        if not isinstance(error, ValidationError):
            print(f"journeys simulate: --friction-churn-file: {error}", file=sys.stderr)
            return None
        for item in error.errors(include_url=False):
            name = "--" + str(item["loc"][0]).replace("_", "-") if item["loc"] else "options"
            print(f"journeys simulate: {name}: {item['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return None


def _paced(lines: Iterator[Any], speed: float, live_from_ms: int) -> Iterator[Any]:
    """Hold each line back until its delivery time, at ``speed`` x real time."""
    origin: tuple[float, int] | None = None
    for line in lines:
        if line.deliver_ms >= live_from_ms:
            if origin is None:
                origin = (time.monotonic(), line.deliver_ms)
            due = origin[0] + (line.deliver_ms - origin[1]) / 1000.0 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield line


def run(args: argparse.Namespace) -> int:
    from simulator import SimulationStream
    from simulator.clock import iso_utc, utc_day_start

    config = _config(args)
    if config is None:
        return 2
    if args.speed is not None and (args.bootstrap is None or args.speed <= 0):
        print("journeys simulate: --speed: needs --bootstrap and a value > 0", file=sys.stderr)
        return 2
    progress = not args.no_progress and sys.stderr.isatty()

    with ExitStack() as stack:
        truth_out: IO[bytes] | None = None
        if args.truth:
            truth_out = stack.enter_context(open(args.truth, "wb"))

        def on_truth(record: Any) -> None:
            assert truth_out is not None
            truth_out.write(orjson.dumps(record.to_json()) + b"\n")

        stream = SimulationStream(config, on_truth=on_truth if truth_out is not None else None)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = stack.enter_context(tqdm(total=config.days, unit="day", desc="simulate", file=sys.stderr))

        invalid: list[tuple[int, str]] = []

        def numbered() -> Iterator[tuple[int, bytes]]:
            lines: Iterator[Any] = iter(stream)
            if args.speed is not None:
                lines = _paced(lines, args.speed, utc_day_start(config.start))
            done = 0
            for number, line in enumerate(lines, 1):
                if line.invalid is not None:
                    invalid.append((number, line.invalid))
                if bar is not None and stream.stats.days_done != done:
                    bar.update(stream.stats.days_done - done)
                    done = stream.stats.days_done
                    bar.set_postfix(lines=stream.stats.lines, refresh=False)
                yield number, line.data
            if bar is not None:
                bar.update(stream.stats.days_done - done)

        started = time.monotonic()
        if args.out is not None:
            out: IO[bytes] = sys.stdout.buffer if args.out == "-" else stack.enter_context(open(args.out, "wb"))
            batch: list[bytes] = []
            for _, data in numbered():
                batch.append(data)
                if len(batch) >= RELEASE_EVERY:
                    out.write(b"\n".join(batch) + b"\n")
                    batch.clear()
            if batch:
                out.write(b"\n".join(batch) + b"\n")
            out.flush()
        else:
            from runtime.config import load_settings
            from streams.produce import ProduceError, produce_events, quiet_kafka_clients

            settings = load_settings(bootstrap=args.bootstrap)
            quiet_kafka_clients()
            try:
                produce_events(
                    numbered(), settings.bootstrap, topics=settings.topics, progress=False,
                    deadletter_topic=settings.topic_deadletter, origin_file="simulator",
                )
            except ProduceError as error:
                print(f"journeys simulate: {error}", file=sys.stderr)
                return 1

        stats = stream.stats
        if truth_out is not None:
            for patient in stream.patients().values():
                truth_out.write(orjson.dumps(patient.to_json()) + b"\n")
            for departure in stream.departures:
                truth_out.write(orjson.dumps(departure.to_json()) + b"\n")
            for number, reason in invalid:
                truth_out.write(orjson.dumps({"record": "invalid_line", "line": number, "reason": reason}) + b"\n")
            truth_out.write(orjson.dumps({
                "record": "summary",
                "watermark": None if stream.watermark_ms is None else iso_utc(stream.watermark_ms),
                "watermark_ms": stream.watermark_ms,
                "lines": stats.lines, "events": stats.events, "duplicates": stats.duplicates,
                "invalid": stats.invalid, "appointments": stats.appointments,
                "config": config.model_dump(mode="json"),
            }) + b"\n")
    elapsed = time.monotonic() - started
    where = args.out if args.out is not None else args.bootstrap
    print(
        f"journeys simulate: {stats.lines} lines ({stats.events} events, {stats.duplicates} duplicates, "
        f"{stats.invalid} invalid) for {stats.appointments} appointments -> {where} in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0
