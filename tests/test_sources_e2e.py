"""HL7 v2 and FHIR R4 through the whole pipeline, over real sockets, against the real broker.

A simulated clinic day (one site) is sent the way hospitals send it: each appointment's
scheduling and check-in events either as HL7 v2 SIU/ADT messages over MLLP to
``journeys hl7 listen`` or as FHIR Appointment/Encounter notifications POSTed to
``journeys fhir serve`` (both child processes; half the appointments each, by a hash of the
id), and the events neither can carry (waits, telehealth sessions, reminders, left without
being seen, HL7 roomings without a room) as contract JSON. Split by appointment, not by
family: a FHIR Appointment seen first at check-in would be booked a second time.

The journeys in ClickHouse must equal, metric by metric (``tests.truth.JOURNEY_METRICS``),
those of the same day sent as contract JSON through a second pipeline, and the truth. What
the messages cannot carry is outside those metrics: the check-in channel (``checkin_channel``
column; HL7 ADT^A04 and FHIR status ``checked-in`` have no channel, the source's configured
one is used), the ``attributes``, and ``source``/``event_id``.

Also: every message acknowledged (AA / 200) is in Kafka, in the raw topic as received, and
its events in the pipeline; a message that maps to nothing valid is answered AE / 422 with
the reason and published nowhere; Kafka down means AR / 503; SIGTERM stops a gateway in
seconds; known faults print one line and exit 2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.main import main
from runtime.config import Settings
from schemas.timestamps import epoch_ms
from simulator import SimulationConfig, simulate
from sources.fhir import FHIRSource
from sources.hl7 import HL7Source
from sources.hl7.client import MLLPClient
from sources.render import FHIRRenderer, fhir_carries, hl7_carries, render_hl7
from streams.broker import LocalBroker
from streams.gateway import GatewayThread
from streams.pipeline import LocalPipeline
from tests.truth import JOURNEY_METRICS, clickhouse_journeys, journey_mismatches

pytestmark = [pytest.mark.broker]

# Environment of a gateway child: the settings it must share with the pipeline under test.
_GATEWAY_SETTINGS = ("topic_scheduling", "topic_checkin", "topic_waits", "topic_telehealth", "topic_raw_hl7",
                     "topic_raw_fhir", "partitions")
BAD_SIU = (b"MSH|^~\\&|EHR|NORTH|||20260302080000-0500||SIU^S12^SIU_S12|BAD-1|P|2.5\r"
           b"SCH||||||||NORMAL|30|MIN\rTQ1|1||||||20260310093000-0500\rPID|1||MRN1\r")
PATIENT = json.dumps({"resourceType": "Patient", "id": "p1"}).encode()


class GatewayProcess:
    """``journeys KIND ACTION --port 0`` as a child process; :attr:`address` from its start log."""

    def __init__(self, kind: str, action: str, settings: Settings, log_dir: Path) -> None:
        self.log_path = log_dir / f"{kind}-gateway.log"
        env = {**os.environ, "JOURNEYS_LOG_FORMAT": "json", "JOURNEYS_LOG_LEVEL": "INFO",
               **{f"JOURNEYS_{name.upper()}": str(getattr(settings, name)) for name in _GATEWAY_SETTINGS}}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", kind, action, "--port", "0", "--bootstrap", settings.bootstrap],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        self.address = self._wait_listening(timeout=60)

    def _wait_listening(self, timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if '"gateway_listening"' in line:
                    record = json.loads(line)
                    return record["host"], record["port"]
            assert self.process.poll() is None, f"gateway exited: {self.log_path.read_text()}"
            time.sleep(0.1)
        raise TimeoutError(f"gateway not listening after {timeout:g} s: {self.log_path.read_text()}")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the stop took."""
        started = time.monotonic()
        self.process.terminate()
        code = self.process.wait(timeout=30)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def post(address: tuple[str, int], body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://{address[0]}:{address[1]}/", data=body, method="POST",
                                     headers={"Content-Type": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def carrier(event: dict[str, Any]) -> str:
    """``hl7``, ``fhir`` or ``json``: half the appointments go as HL7 v2, half as FHIR."""
    native = "hl7" if zlib.crc32(event["appointment_id"].encode()) % 2 else "fhir"
    carries = hl7_carries if native == "hl7" else fhir_carries
    return native if carries(event) else "json"


def raw_messages(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    """Every record of ``topic``, read until ``expected`` arrived (end offsets of tansu lie)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
        return values
    finally:
        consumer.close()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    """Gateway children started by a test; killed if the test did not stop them."""
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.kill()


@pytest.mark.slow
@pytest.mark.one_broker("kafka")
def test_a_day_over_hl7_and_fhir_equals_the_same_day_as_contract_json(broker, isolated_settings, gateways,
                                                                      tmp_path):
    simulation = simulate(SimulationConfig(seed=11, days=1, sites=1))
    events = [orjson.loads(line) for line in simulation.lines]
    end_ms = max(epoch_ms(datetime.fromisoformat(e["occurred_at"])) for e in events)
    run = uuid.uuid4().hex[:8]
    settings = isolated_settings(topic_raw_hl7=f"t{run}.raw.hl7", topic_raw_fhir=f"t{run}.raw.fhir")

    acked: dict[str, list[bytes]] = {"hl7": [], "fhir": []}
    with LocalPipeline(settings, bootstrap=broker.bootstrap) as pipeline:
        hl7 = GatewayProcess("hl7", "listen", pipeline.settings, tmp_path)
        gateways.append(hl7)
        fhir = GatewayProcess("fhir", "serve", pipeline.settings, tmp_path)
        gateways.append(fhir)
        renderer = FHIRRenderer()
        as_json: list[tuple[int, bytes]] = []
        with MLLPClient(*hl7.address) as client:
            ack = client.send(BAD_SIU)
            assert (ack.code, ack.control_id) == ("AE", "BAD-1") and ack.text.startswith("missing_field at SCH-2.1")
            status, outcome = post(fhir.address, PATIENT)
            assert status == 422 and outcome["issue"][0]["details"]["coding"][0]["code"] == "fhir_unsupported_resource"
            for number, (line, event) in enumerate(zip(simulation.lines, events), start=1):
                way = carrier(event)
                if way == "hl7":
                    message = render_hl7(event)
                    ack = client.send(message)
                    assert ack.code == "AA", (event, ack)
                    acked["hl7"].append(message)
                elif way == "fhir":
                    body = orjson.dumps(renderer.render(event))
                    status, outcome = post(fhir.address, body)
                    assert status == 200, (event, outcome)
                    acked["fhir"].append(body)
                else:
                    as_json.append((number, line))
        assert len(acked["hl7"]) > 200 and len(acked["fhir"]) > 200 and len(as_json) > 500
        pipeline.feed(as_json, origin="rest.jsonl", progress=False)
        pipeline.wait_until_processed(final=True, end_ms=end_ms, progress=False)
        for gateway in (hl7, fhir):
            code, seconds = gateway.terminate()
            assert code == 0 and seconds < 5, gateway.log_path.read_text()
        native = clickhouse_journeys(pipeline.client, settings.clickhouse_database)
        stored = set(pipeline.client.query(
            f"SELECT source, event_id FROM {settings.clickhouse_database}.events FINAL "
            "WHERE source IN ('hl7', 'fhir')").result_rows)

    # No acknowledged message lost: each one as received in its raw topic, and its events
    # (mapped again here by the same sources, in the same order) through the pipeline; the
    # rejected ones nowhere.
    for kind, topic in (("hl7", settings.topic_raw_hl7), ("fhir", settings.topic_raw_fhir)):
        assert sorted(raw_messages(broker.bootstrap, topic, len(acked[kind]))) == sorted(acked[kind])
    expected: set[tuple[str, str]] = set()
    for kind, source in (("hl7", HL7Source()), ("fhir", FHIRSource())):
        for message in acked[kind]:
            mapped = source.map(message)
            assert isinstance(mapped, list)
            expected.update((e["source"], e["event_id"]) for e in mapped)
    assert stored == expected

    plain = isolated_settings().model_copy(update={"clickhouse_database": f"{settings.clickhouse_database}_json"})
    with LocalPipeline(plain, bootstrap=broker.bootstrap) as pipeline:
        pipeline.feed(list(enumerate(simulation.lines, start=1)), origin="day.jsonl", progress=False)
        pipeline.wait_until_processed(final=True, end_ms=end_ms, progress=False)
        as_contract_json = clickhouse_journeys(pipeline.client, plain.clickhouse_database)

    assert set(native) == set(as_contract_json) == set(simulation.truth)
    differing = {(appointment, metric): (row[metric], native[appointment][metric])
                 for appointment, row in as_contract_json.items() for metric in JOURNEY_METRICS
                 if row[metric] != native[appointment][metric]}
    assert not differing, f"{len(differing)} metrics differ, e.g. {list(differing.items())[:5]}"
    mismatches, examples = journey_mismatches(simulation.truth, native)
    assert not mismatches, (mismatches, examples)
    # The check-in channel is what the messages lose: kiosk and mobile check-ins arrive as front_desk.
    channels = {a: (row["checkin_channel"], native[a]["checkin_channel"]) for a, row in as_contract_json.items()
                if row["checkin_channel"] != native[a]["checkin_channel"]}
    assert channels and all(got == "front_desk" for _, got in channels.values())


def test_kafka_down_means_ar_and_503_and_nothing_is_acknowledged() -> None:
    """Its own broker, stopped under the running gateways: the sender is told to retry."""
    booked = {"event_id": "e1", "event_type": "appointment.booked", "schema_version": 1,
              "occurred_at": "2026-03-02T08:00:00-05:00", "source": "sim", "patient_id": "p1",
              "appointment_id": "A1", "site_id": "north", "department": "cardiology",
              "scheduled_start": "2026-03-10T09:30:00-05:00", "duration_min": 30,
              "visit_type": "followup", "modality": "in_person"}
    later = {**booked, "event_id": "e2", "appointment_id": "A2"}
    own = LocalBroker(topics=Settings.model_construct().input_topics, partitions=2).start()
    settings = Settings(bootstrap=own.bootstrap, partitions=2, gateway_timeout_s=2.0)
    try:
        with GatewayThread("hl7", settings, HL7Source()) as hl7, GatewayThread("fhir", settings, FHIRSource()) as fhir:
            with MLLPClient(*hl7.address) as client:
                assert client.send(render_hl7(booked)).code == "AA"
                assert post(fhir.address, orjson.dumps(FHIRRenderer().render(booked)))[0] == 200
                own.stop()
                ack = client.send(render_hl7(later))
                assert ack.code == "AR" and "did not acknowledge" in ack.text
                status, outcome = post(fhir.address, orjson.dumps(FHIRRenderer().render(later)))
                assert status == 503 and "did not acknowledge" in outcome["issue"][0]["diagnostics"]
    finally:
        own.stop()


def test_known_faults_print_one_line_and_exit_2(broker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEYS_LOG_LEVEL", "WARNING")
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: Mars/Olympus\n")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cases = {
        ("hl7", "listen", "--port", "0", "--bootstrap", "127.0.0.1:1"): "cannot reach Kafka at 127.0.0.1:1",
        ("fhir", "serve", "--port", str(taken.getsockname()[1]), "--bootstrap", broker.bootstrap):
            "cannot listen on 127.0.0.1:",
        ("hl7", "listen", "--config", str(bad)): "'Mars/Olympus' is not an IANA time zone",
        ("fhir", "convert", "--config", str(tmp_path / "missing.yaml"), str(bad)): "cannot read --config",
    }
    try:
        for argv, says in cases.items():
            assert main(list(argv)) == 2, argv
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and says in err and err.startswith(f"journeys {argv[0]} {argv[1]}: "), err
    finally:
        taken.close()


def test_convert_prints_events_and_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    booked = {"event_id": "e1", "event_type": "appointment.booked", "schema_version": 1,
              "occurred_at": "2026-03-02T08:00:00-05:00", "source": "sim", "patient_id": "p1",
              "appointment_id": "A1", "site_id": "north", "department": "cardiology",
              "scheduled_start": "2026-03-10T09:30:00-05:00", "duration_min": 30,
              "visit_type": "followup", "modality": "in_person"}
    day = tmp_path / "day.hl7"
    day.write_bytes(render_hl7(booked) + b"\n" + BAD_SIU)
    assert main(["hl7", "convert", str(day)]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["appointment_id"] for line in out.splitlines()] == ["A1"]
    assert err.startswith(f"{day}: message 2: missing_field at SCH-2.1")
    resource = tmp_path / "a1.json"
    resource.write_bytes(orjson.dumps(FHIRRenderer().render(booked)))
    assert main(["fhir", "convert", str(resource)]) == 0
    assert json.loads(capsys.readouterr().out)["event_type"] == "appointment.booked"
