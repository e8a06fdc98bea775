"""Stream worker throughput: replay N simulated events through the real broker.

    python bench/throughput.py --events 200000

1. simulates at least N events (clean: no invalid lines) and pre-produces them to the
   local broker, so the worker's clock measures the worker, not the producer;
2. measures the raw transport ceiling: aiokafka ``getmany`` plus ``orjson.loads`` of the
   same events from the same broker, nothing else (what a worker could reach at best);
3. starts ONE ``journeys worker`` process and polls its /metrics until it has taken
   every event; prints events/s per worker process, its share of the ceiling and the
   worker's peak RSS;
4. runs the same events through the transport-free journey logic (offline pipeline)
   to show where the time goes (edge decode, journey logic, Kafka and Faust), and
   prints the state bytes per open appointment and per archived one, and what a return
   from the archive costs (a backfill where every fact brings its journey back).

``--broker kafka`` runs the worker against a real Apache Kafka 4.x node instead of tansu.

With ``--profile FILE`` (py-spy, ``pip install -e ".[bench]"``) it records the worker
and prints the share of its time per part (journey agent, asyncio loop, producing,
Faust's machinery, fetching, idle) and the hottest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from journey.facts import MS  # noqa: E402
from journey.offline import OfflinePipeline  # noqa: E402
from journey.state import JourneyState  # noqa: E402
from runtime.config import load_settings  # noqa: E402
from simulator import SimulationConfig, simulate  # noqa: E402
from streams.assemble import offline_pipeline  # noqa: E402
from streams.broker import LocalBroker  # noqa: E402
from streams.kafka_server import KafkaServer  # noqa: E402
from streams.pipeline import WorkerProcess  # noqa: E402
from streams.produce import produce_events  # noqa: E402
from streams.topics import ensure_pipeline_topics  # noqa: E402


def simulated_lines(events: int, seed: int) -> list[bytes]:
    days = 7
    while True:
        lines = list(simulate(SimulationConfig(seed=seed, days=days, sites=6, volume=16)).lines)
        if len(lines) >= events:
            return lines[:events]
        days = int(days * events / max(len(lines), 1) * 1.1) + 1


def archive_returns(offline: OfflinePipeline) -> str:
    """One new fact for each archived journey, in batches of 2,000: the cost of a backfill
    where every fact brings its journey back from the archive."""
    journeys = offline.journeys
    stores = offline.journey_stores
    archived = list(stores.archive)
    if not archived:
        return "archive: empty (no journey closed long enough before the end)"
    batches: list[dict[str, list[list[object]]]] = [{}]
    for number, appointment_id in enumerate(archived):
        state = JourneyState.from_bytes(zlib.decompress(stores.archive[appointment_id]))
        known = next(iter(state.facts.values()))
        fact = [known[MS] + 60_000, "appointment.reminder_sent", "backfill", f"bf-{number}", *known[4:8],
                {"channel": "sms"}]
        if len(batches[-1]) == 2000:
            batches.append({})
        batches[-1][appointment_id] = [fact]
    returns_before = journeys.returns
    started = time.perf_counter()
    for batch in batches:
        journeys.process(stores, 0, batch)
    elapsed = time.perf_counter() - started
    returned = journeys.returns - returns_before
    return (f"archive returns: {returned} journeys brought back by one fact each in {elapsed:.2f} s: "
            f"{elapsed / max(returned, 1) * 1e6:,.0f} µs per return ({returned / elapsed:,.0f} facts/s)")


def transport_ceiling(bootstrap: str, topics: list[str], events: int) -> float:
    """Events/s of aiokafka's ``getmany`` plus ``orjson.loads`` over the input topics from
    the start: the fetching and decoding any worker does, and nothing else."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def consume() -> float:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_poll_records=5000)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, partition) for topic in topics
                          for partition in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            taken, started = 0, time.perf_counter()
            while taken < events:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        orjson.loads(record.value)
                    taken += len(records)
            return taken / (time.perf_counter() - started)
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far: on shared cores, a steadier measure than the clock."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# Where a worker's time goes: the first rule matching the sampled frame's file wins.
TIME_SHARES = (
    ("journey agent: decode, journey logic, rows", ("(journey/", "(streams/", "(schemas/", "(pydantic")),
    ("producing outputs and changelog writes", ("aiokafka/producer", "aiokafka/partitioner", "faust/topics.py",
                                                "faust/transport/producer.py", "Producer.send (faust/")),
    ("fetching (aiokafka)", ("aiokafka/",)),
    ("Faust and mode per-message machinery", ("faust/", "mode/")),
    ("asyncio event loop", ("asyncio/",)),
    ("idle (waiting in epoll)", ("selectors.py",)),
)


def hotspots(raw_profile: Path, top: int = 15) -> str:
    """Shares of py-spy's samples (raw output): by part of the worker, then per function, self and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    shares: Counter[str] = Counter()
    total = 0
    for line in raw_profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, samples = stack.split(";"), int(count)
        total += samples
        own[frames[-1]] += samples
        inclusive.update(dict.fromkeys(frames, samples))
        part = next((name for name, marks in TIME_SHARES if any(mark in frames[-1] for mark in marks)), "other")
        shares[part] += samples
    lines = [f"{100 * n / total:5.1f}% of the worker: {name}" for name, n in shares.most_common()]
    lines += [f"{100 * n / total:5.1f}% self  {name}" for name, n in own.most_common(top)]
    lines += [f"{100 * n / total:5.1f}% total {name}" for name, n in inclusive.most_common(top * 4)
              if "streams/" in name or "faust/" in name][:top]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--profile", metavar="FILE", help="record the worker with py-spy (raw format) into FILE")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu", help="the broker the worker reads")
    args = parser.parse_args()

    lines = simulated_lines(args.events, args.seed)
    print(f"simulated {len(lines)} events")

    started = time.perf_counter()
    offline = offline_pipeline(load_settings(batch_size=args.batch_size))
    result = offline.run(lines)
    logic_s = time.perf_counter() - started
    hot, archive = offline.journey_stores.hot, offline.journey_stores.archive
    print(f"journey logic alone (decode + state + rows, no Kafka): {len(lines) / logic_s:,.0f} events/s")
    print(f"state: {len(hot)} open journeys, {sum(map(len, hot.values())) / max(len(hot), 1):,.0f} bytes each; "
          f"{len(archive)} archived, {sum(map(len, archive.values())) / max(len(archive), 1):,.0f} bytes each "
          f"({result.counts['journey_versions']} journey versions)")
    print(archive_returns(offline))

    # 3 s sessions (tansu's group join waits half of one); Kafka refuses under 6 s unless told.
    broker = (KafkaServer(partitions=args.partitions, extra_config={"group.min.session.timeout.ms": "1000"})
              if args.broker == "kafka" else LocalBroker(partitions=args.partitions))
    with tempfile.TemporaryDirectory() as run_dir, broker:
        settings = load_settings(bootstrap=broker.bootstrap, partitions=args.partitions, session_timeout_s=3.0,
                                 batch_size=args.batch_size)
        ensure_pipeline_topics(settings)
        produce_events(lines, broker.bootstrap, settings.topics, progress=False)
        ceiling = transport_ceiling(broker.bootstrap, list(settings.input_topics), len(lines))
        print(f"raw transport ceiling (aiokafka getmany + orjson.loads, same broker): {ceiling:,.0f} events/s")
        worker = WorkerProcess(settings, broker.bootstrap, Path(run_dir), 0)
        try:
            worker.wait_ready(timeout=120)
            profiler = None
            if args.profile:
                # The py-spy of this environment (`pip install -e ".[bench]"`), on PATH or not.
                py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                profiler = subprocess.Popen([py_spy, "record", "-p", str(worker.process.pid), "-f", "raw",
                                             "-o", args.profile, "--nonblocking"], stdout=subprocess.DEVNULL)
            first = None
            while True:
                taken = worker.metrics().get("journeys_events_valid_total", 0)
                now = time.perf_counter()
                if taken and first is None:
                    first = (now, taken)
                    cpu_first = cpu_seconds(worker.process.pid)
                if taken >= len(lines):
                    cpu_last = cpu_seconds(worker.process.pid)
                    break
                time.sleep(0.1)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
                print(f"profile: {args.profile}")
                print(hotspots(Path(args.profile)))
            assert first is not None
            elapsed = now - first[0]
            rate = (taken - first[1]) / elapsed if elapsed > 0 else float("inf")
            per_cpu_s = (taken - first[1]) / max(cpu_last - cpu_first, 1e-9)
            print(f"stream worker (1 process, {args.partitions} partitions, batch {args.batch_size}): "
                  f"{rate:,.0f} events/s ({100 * rate / ceiling:.1f}% of the ceiling), "
                  f"{per_cpu_s:,.0f} per CPU second of the worker; "
                  f"peak RSS {peak_rss_mb(worker.process.pid):,.0f} MB")
        finally:
            worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
