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
PLAIN_EVERY_S = 10.0  # without a terminal (a log, a pipe), one progress line this often
# A simulated day's events run into the next UTC day at sites west of UTC (an evening
# clinic in Seattle ends after 04:00 UTC): the paced span reaches this far past the last day.
LAST_DAY_TAIL_MS = 8 * 3_600_000


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


class _Progress:
    """How far the run is, moving with the work: days simulated or, with ``--speed``, the
    delivery time of the line just sent across the simulated span (the simulator makes a
    day's lines before the pace lets them out, so counting its days would read 100% at the
    start). A bar on a terminal; otherwise a plain line every :data:`PLAIN_EVERY_S`."""

    def __init__(self, days: int, paced_span: tuple[int, int] | None, *, terminal: bool) -> None:
        self.days = days
        self.paced_span = paced_span
        self.fraction = 0.0
        self.lines = 0
        self.deliver_ms: int | None = None
        self._next_plain = time.monotonic() + PLAIN_EVERY_S
        self._next_draw = 0.0
        self._bar: Any = None
        if terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=100, unit="%", desc="simulate", file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def update(self, days_done: int, deliver_ms: int, lines: int) -> None:
        now = time.monotonic()
        if now < self._next_draw:  # called per line: draw at most twice a second
            return
        self._next_draw = now + 0.5
        self.lines, self.deliver_ms = lines, deliver_ms
        if self.paced_span is not None:
            start, end = self.paced_span
            fraction = min(max((deliver_ms - start) / (end - start), 0.0), 1.0)
        else:
            fraction = days_done / self.days
        self.fraction = max(self.fraction, fraction)
        if self._bar is not None:
            self._bar.set_description_str(f"simulate ({lines:,} lines)", refresh=False)
            self._bar.update(self.fraction * 100 - self._bar.n)
        elif now >= self._next_plain:
            self._next_plain = now + PLAIN_EVERY_S
            self._plain()

    def _plain(self) -> None:
        from simulator.clock import iso_utc

        at = f", simulated time {iso_utc(self.deliver_ms)[:16]}Z" if self.deliver_ms is not None else ""
        print(f"journeys simulate: {self.fraction:.0%} ({self.lines:,} lines{at})", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.fraction = 1.0
        if self._bar is not None:
            self._bar.update(100 - self._bar.n)
            self._bar.close()


def run(args: argparse.Namespace) -> int:
    from simulator import SimulationStream
    from simulator.clock import iso_utc, utc_day_start

    config = _config(args)
    if config is None:
        return 2
    if args.speed is not None and (args.bootstrap is None or args.speed <= 0):
        print("journeys simulate: --speed: needs --bootstrap and a value > 0", file=sys.stderr)
        return 2

    with ExitStack() as stack:
        truth_out: IO[bytes] | None = None
        if args.truth:
            truth_out = stack.enter_context(open(args.truth, "wb"))

        def on_truth(record: Any) -> None:
            assert truth_out is not None
            truth_out.write(orjson.dumps(record.to_json()) + b"\n")

        stream = SimulationStream(config, on_truth=on_truth if truth_out is not None else None)
        live_from_ms = utc_day_start(config.start)
        paced_span = None
        if args.speed is not None:
            end_ms = utc_day_start(config.start + dt.timedelta(days=config.days)) + LAST_DAY_TAIL_MS
            if config.cutoff is not None:
                end_ms = min(end_ms, int(config.cutoff.timestamp() * 1000))
            paced_span = (live_from_ms, max(end_ms, live_from_ms + 1))
        progress = None
        if not args.no_progress:
            progress = _Progress(config.days, paced_span, terminal=sys.stderr.isatty())
            stack.callback(progress.close)

        invalid: list[tuple[int, str]] = []

        def numbered() -> Iterator[tuple[int, bytes]]:
            lines: Iterator[Any] = iter(stream)
            if args.speed is not None:
                lines = _paced(lines, args.speed, live_from_ms)
            for number, line in enumerate(lines, 1):
                if line.invalid is not None:
                    invalid.append((number, line.invalid))
                if progress is not None:
                    progress.update(stream.stats.days_done, line.deliver_ms, number)
                yield number, line.data

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
