"""Faults and bad input never stop the pipeline or lose data (real broker, workers, ClickHouse).

Each test injects one fault while simulated days flow, and checks that every valid event is
in its journey (equal to the simulator's truth), every bad one is a dead letter with its
reason, and the pipeline still runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from runtime.config import Settings
from simulator import SimulationConfig, simulate
from streams.broker import LocalBroker
from streams.pipeline import LocalPipeline
from tests.truth import clickhouse_journeys, journey_mismatches

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DISORDERED = dict(duplicate_fraction=0.03, out_of_order_fraction=0.05, invalid_fraction=0.01)


def assert_matches_truth(pipeline: LocalPipeline, truth: dict) -> None:
    rows = clickhouse_journeys(pipeline.client, pipeline.settings.clickhouse_database)
    mismatches, examples = journey_mismatches(truth, {key: row for key, row in rows.items() if key in truth})
    assert not mismatches, f"metrics differing from the truth: {dict(mismatches)}; e.g. {examples}"


def dead_letters(pipeline: LocalPipeline) -> dict[str, int]:
    db = pipeline.settings.clickhouse_database
    return dict(pipeline.client.query(f"SELECT reason, count() FROM {db}.deadletters FINAL GROUP BY reason").result_rows)


def test_a_five_megabyte_message_is_dead_lettered_and_nothing_else_is_lost(broker, isolated_settings) -> None:
    simulation = simulate(SimulationConfig(seed=51, days=2, sites=1, **DISORDERED))
    settings = isolated_settings()
    poison = orjson.dumps({"event_type": "patient.arrived", "appointment_id": "X-1", "junk": "x" * (5 << 20)})
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        if broker.kind != "tansu":  # Apache Kafka refuses messages over 1 MB unless the topic allows them
            from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic_checkin,
                                                configs={"max.message.bytes": str(8 << 20)})])
            admin.close()
        lines = list(enumerate(simulation.lines, 1))
        first = pipeline.feed(lines[: len(lines) // 2], progress=False)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_request_size=8 << 20)
        producer.send(settings.topic_checkin, key=b"X-1", value=poison).get(timeout=30)
        producer.close()
        second = pipeline.feed(lines[len(lines) // 2:], progress=False)
        end = max(first.max_occurred_ms or 0, second.max_occurred_ms or 0)
        pipeline.wait_until_processed(final=True, end_ms=end, progress=False)
        assert_matches_truth(pipeline, simulation.truth)
        reasons = dead_letters(pipeline)
        assert reasons.pop("message_too_large") == 1
        assert sum(reasons.values()) == first.dead_lettered + second.dead_lettered
        assert all(worker.process.poll() is None for worker in pipeline.workers), "the worker must still run"
        consumer = KafkaConsumer(settings.topic_deadletter, bootstrap_servers=broker.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000, fetch_max_bytes=16 << 20)
        big = [r for r in consumer if dict(r.headers).get("reason") == b"message_too_large"]
        consumer.close()
        assert len(big) == 1 and len(big[0].value) == 64 * 1024
        headers = dict(big[0].headers)
        assert headers["original_size"] == str(len(poison)).encode() and headers["truncated"] == b"1"


def _miskeyed(lines: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    """Every third event keyed with its event id or with nothing (a producer that keys by
    something else than the journey)."""
    out: list[tuple[bytes | None, bytes]] = []
    for number, line in enumerate(lines):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or not isinstance(event.get("appointment_id"), str):
            continue
        key = event["appointment_id"].encode()
        if number % 3 == 1:
            key = str(event.get("event_id")).encode()
        elif number % 3 == 2:
            key = None
        out.append((key, line))
    return out


def _last_occurred(lines: list[bytes]) -> int:
    from schemas.decode import Rejected, decode
    from schemas.timestamps import epoch_ms

    return max(epoch_ms(event.occurred_at) for event in map(decode, lines) if not isinstance(event, Rejected))


def _produce_keyed(bootstrap: str, settings: Settings, keyed: list[tuple[bytes | None, bytes]]) -> None:
    from schemas.eventfile import topic_for

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for key, line in keyed:
        topic = topic_for(line, settings.topics)
        if isinstance(topic, str):
            producer.send(topic, key=key, value=line)
    producer.flush(timeout=60)
    producer.close()


@pytest.mark.one_broker("tansu")
def test_events_keyed_with_something_else_join_their_journey_on_two_workers(broker, isolated_settings) -> None:
    simulation = simulate(SimulationConfig(seed=53, days=2, sites=2, duplicate_fraction=0.03))
    settings = isolated_settings()
    with LocalPipeline(settings, bootstrap=broker.bootstrap, workers=2) as pipeline:
        _produce_keyed(broker.bootstrap, settings, _miskeyed(list(simulation.lines)))
        pipeline.wait_until_processed(final=False, progress=False)  # what was read elsewhere is sent on
        pipeline.wait_until_processed(final=True, end_ms=_last_occurred(simulation.lines), progress=False)
        assert_matches_truth(pipeline, simulation.truth)
        assert pipeline.worker_metrics()["journeys_rerouted_total"] > 100
        db = settings.clickhouse_database
        # One journey state per appointment: no second, smaller version anywhere.
        assert pipeline.client.command(f"SELECT count() FROM {db}.appointment_journeys FINAL") == len(simulation.truth)


@pytest.mark.one_broker("tansu")
def test_events_keyed_with_something_else_can_be_dead_lettered_instead(broker, isolated_settings) -> None:
    simulation = simulate(SimulationConfig(seed=55, days=1, sites=1))
    settings = isolated_settings(wrong_key="deadletter")
    keyed = _miskeyed(list(simulation.lines))
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        _produce_keyed(broker.bootstrap, settings, keyed)
        pipeline.wait_until_processed(final=False, progress=False)
        metrics = pipeline.worker_metrics()
        refused = metrics.get('journeys_dead_letters_total{reason="wrong_key"}', 0)
        assert refused > 50 and dead_letters(pipeline).get("wrong_key") == refused
        assert metrics["journeys_events_valid_total"] + refused == len(keyed)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except OSError as error:
        return int(getattr(error, "code", 0) or 0)


def test_readyz_turns_503_while_the_broker_is_gone(tmp_path: Path, isolated_settings) -> None:
    broker = LocalBroker().start()
    try:
        with LocalPipeline(isolated_settings(), bootstrap=broker.bootstrap) as pipeline:
            worker = pipeline.workers[0]
            assert _get(f"http://127.0.0.1:{worker.web_port}/readyz") == 200
            broker.stop()
            deadline = time.monotonic() + 30
            while _get(f"http://127.0.0.1:{worker.web_port}/readyz") != 503:
                assert time.monotonic() < deadline, "readyz still 200 with the broker gone"
                time.sleep(0.5)
            assert _get(f"http://127.0.0.1:{worker.web_port}/healthz") == 200
            broker.start()  # back: the worker and the writer stop cleanly
    finally:
        broker.stop()


class Up:
    """``journeys up`` as a user runs it, in its own process."""

    def __init__(self, tmp_path: Path, clickhouse_dsn: str, database: str):
        env = {**os.environ, "JOURNEYS_DATA_DIR": str(tmp_path / "data"), "JOURNEYS_CLICKHOUSE_DATABASE": database,
               "JOURNEYS_WRITER_PORT": str(_free()), "JOURNEYS_LOG_FORMAT": "json"}
        self.output = tmp_path / "up.out"
        self._out = self.output.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--workers", "2", "--clickhouse", f"chdb://{tmp_path / 'ch'}"],
            cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        self.bootstrap = self.wait_for_line("bootstrap:").split()[-1]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_line(self, start: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.text().splitlines():
                if line.startswith(start):
                    return line
            assert self.process.poll() is None, f"journeys up exited:\n{self.text()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no line starting {start!r}:\n{self.text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid), "-f", "cli.main worker"],
                             capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._out.close()


def _free() -> int:
    from runtime.children import free_port

    return free_port()


def test_journeys_up_restarts_a_killed_worker_and_stops_quickly(tmp_path: Path, fresh_database: str) -> None:
    up = Up(tmp_path, "", fresh_database)
    try:
        up.wait_for_line("running;")
        victim = up.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        up.wait_for_line("journeys up: stream worker", timeout=30)
        deadline = time.monotonic() + 60
        while len(up.worker_pids()) < 2:
            assert time.monotonic() < deadline, f"the worker was not restarted:\n{up.text()[-2000:]}"
            time.sleep(0.5)
        assert up.process.poll() is None
        started = time.monotonic()
        up.process.send_signal(signal.SIGINT)
        up.process.wait(timeout=30)
        assert time.monotonic() - started < 15, "Ctrl-C should stop journeys up in a few seconds"
        assert up.process.returncode == 0
    finally:
        up.close()


def test_journeys_up_says_so_and_stops_when_its_broker_dies(tmp_path: Path, fresh_database: str) -> None:
    up = Up(tmp_path, "", fresh_database)
    try:
        up.wait_for_line("running;")
        out = subprocess.run(["pgrep", "-P", str(up.process.pid), "tansu"], capture_output=True, text=True).stdout
        os.kill(int(out.split()[0]), signal.SIGKILL)
        up.process.wait(timeout=30)
        assert up.process.returncode == 1
        assert "the local broker exited" in up.text()
    finally:
        up.close()


@pytest.mark.one_broker("tansu")
def test_a_booking_dated_1969_lands_and_the_writer_goes_on(broker, isolated_settings) -> None:
    """A valid booking for a visit in 1969 (a migrated record's placeholder date) once stalled
    the writer for good (its hourly bucket cannot be an Array(UInt32) hour)."""
    simulation = simulate(SimulationConfig(seed=57, days=2, sites=1, duplicate_fraction=0.02))
    lines = list(simulation.lines)
    booking = next(orjson.loads(line) for line in lines if b'"appointment.booked"' in line)
    odd = {**booking, "event_id": "booked-1969", "appointment_id": "OLD-1969", "scheduled_start": "1969-07-20T20:17:00Z"}
    lines.insert(len(lines) // 3, orjson.dumps(odd))
    with LocalPipeline(isolated_settings(), bootstrap=broker.bootstrap) as pipeline:
        counts = pipeline.feed(enumerate(lines, 1), progress=False)
        pipeline.wait_until_processed(final=True, end_ms=counts.max_occurred_ms, progress=False)
        assert_matches_truth(pipeline, simulation.truth)
        db = pipeline.settings.clickhouse_database
        assert pipeline.client.command(
            f"SELECT toYear(scheduled_start) FROM {db}.appointment_journeys FINAL WHERE appointment_id = 'OLD-1969'") == 1969


@pytest.mark.one_broker("tansu")
def test_lines_journeys_produce_cannot_route_are_dead_letter_rows(broker, isolated_settings, tmp_path, monkeypatch):
    from cli.main import main

    settings = isolated_settings()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"event_type": "patient.teleported", "appointment_id": "A-1"}\n{"nope": 1}\nnot json\n')
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        for name in ("topic_scheduling", "topic_checkin", "topic_waits", "topic_telehealth", "topic_deadletter",
                     "topic_output"):
            monkeypatch.setenv(f"JOURNEYS_{name.upper()}", getattr(settings, name))
        main(["produce", str(events), "--bootstrap", broker.bootstrap])
        pipeline.wait_until_processed(final=False, progress=False)
        assert dead_letters(pipeline) == {"unknown_event_type": 1, "missing_field": 1, "malformed_json": 1}
