"""The pipeline driven from outside, as an operator or an acceptance harness would:
`journeys up` in one process, events produced by another, `journeys sync --final` to wait,
`journeys query` to read embedded ClickHouse through the running writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from runtime.children import free_port
from simulator import SimulationConfig, simulate
from streams.produce import produce_events

pytestmark = [pytest.mark.slow]


def journeys(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=True)


def test_up_produce_sync_query(tmp_path):
    simulation = simulate(SimulationConfig(seed=41, days=2, sites=1, duplicate_fraction=0.02))
    broker_port, writer_port = free_port(), free_port()
    env = {**os.environ, "JOURNEYS_DATA_DIR": str(tmp_path), "JOURNEYS_WRITER_PORT": str(writer_port),
           "JOURNEYS_BOOTSTRAP": f"127.0.0.1:{broker_port}", "JOURNEYS_WEB_PORT": str(free_port())}
    up = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--port", str(broker_port)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in up.stdout:  # type: ignore[union-attr]
            if line.startswith("running"):
                break
            assert time.monotonic() < deadline, "journeys up did not start"
        produce_events(simulation.lines, f"127.0.0.1:{broker_port}", progress=False)
        journeys("sync", "--final", env=env)
        result = journeys("query", "SELECT appointment_id, status FROM journeys.appointment_journeys FINAL",
                          "--format", "json", env=env)
        statuses = {row["appointment_id"]: row["status"] for row in map(json.loads, result.stdout.splitlines())}
        assert statuses == {appointment: truth.status for appointment, truth in simulation.truth.items()}
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
