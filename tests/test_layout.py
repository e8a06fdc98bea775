"""The dependency rule of the packages (README, "Architecture"), held by reading every import.

Bottom to top: ``schemas`` (the contract) < ``runtime`` (settings, logs, processes) and
the pure cores (``journey``, ``sources``, ``simulator``) < ``sinks`` < ``dashboards``
< ``streams`` (Faust, Kafka, the local pipeline) < ``cli``. A package imports only
what is listed for it; third-party imports are free except where the core is kept
pure of transports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "runtime": {"schemas"},
    "journey": {"schemas"},
    "sources": {"schemas"},
    "simulator": {"schemas", "runtime", "journey"},
    "sinks": {"schemas", "runtime"},
    "dashboards": {"schemas", "runtime", "journey", "sinks"},  # journey: the friction rules' definitions
    "streams": {"schemas", "runtime", "journey", "sources", "sinks"},
    "cli": {"schemas", "runtime", "journey", "sources", "simulator", "sinks", "dashboards", "streams"},
}
OURS = set(ALLOWED) | {"tests", "bench"}
# The journey core and the source mappings are pure Python: tested in milliseconds,
# replayed deterministically, whatever carries them.
TRANSPORTS = {"faust", "mode", "aiokafka", "kafka", "clickhouse_connect", "chdb", "aiohttp"}
PURE = {"journey", "schemas"}


def imports_of(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports (anywhere in it, lazily or not)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = {}
    for path in sorted((REPO / package).rglob("*.py")):
        ours = imports_of(path) & OURS - {package}
        upward = ours - ALLOWED[package]
        if package in PURE:
            upward |= imports_of(path) & TRANSPORTS
        if upward:
            wrong[str(path.relative_to(REPO))] = sorted(upward)
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_every_package_is_placed_in_the_rule() -> None:
    # The tests and the benchmarks sit on top of everything (they drive it all).
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= set(ALLOWED), "a new package needs its place in ALLOWED and in the README's rule"
