"""Known faults print one line naming what failed and what to do, and exit 2 (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.children import free_port

REPO = Path(__file__).resolve().parents[1]


def journeys(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)


@pytest.mark.parametrize(("args", "env", "says"), [
    (("query", "SELECT 1", "--dsn", f"http://default:@127.0.0.1:{free_port()}"), {}, "ClickHouse unreachable"),
    (("query", "SELECT 1"), {"JOURNEYS_PARTITIONS": "0"}, "configuration error: JOURNEYS_PARTITIONS"),
    (("produce", "/dev/null", "--bootstrap", f"127.0.0.1:{free_port()}"), {}, "Kafka"),
], ids=["clickhouse-unreachable", "bad-setting", "broker-unreachable"])
def test_a_known_fault_is_one_line_and_exit_2(args: tuple[str, ...], env: dict[str, str], says: str) -> None:
    result = journeys(*args, **env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr
