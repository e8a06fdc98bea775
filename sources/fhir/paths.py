"""A tiny element path over FHIR JSON: dotted names, lists flattened, ``reference(Type)`` at the end.

>>> appointment = {"participant": [{"actor": {"reference": "Patient/p1"}},
...                                {"actor": {"reference": "Location/loc-9", "display": "Room 9"}}],
...                "serviceType": [{"coding": [{"system": "s", "code": "followup"}]}]}
>>> select(appointment, "participant.actor.reference(Location)"), select(appointment, "serviceType.coding.code")
('loc-9', 'followup')
>>> select(appointment, "participant.actor.reference(Practitioner)") is None
True
"""

from __future__ import annotations

import re
from typing import Any

_REF = re.compile(r"^(?P<name>\w+)\((?P<type>[A-Z]\w*)\)$")


def values(node: Any, path: str) -> list[Any]:
    """Every value at ``path`` under ``node`` (lists are flattened at each step)."""
    current = [node]
    for step in path.split("."):
        match = _REF.match(step)
        name = match["name"] if match else step
        found: list[Any] = []
        for item in current:
            value = item.get(name) if isinstance(item, dict) else None
            if value is None:
                continue
            found.extend(value if isinstance(value, list) else [value])
        if match:
            prefix = match["type"] + "/"
            found = [v.rsplit("/", 1)[-1] for v in found if isinstance(v, str) and _typed(v, prefix)]
        current = found
    return current


def _typed(reference: str, prefix: str) -> bool:
    # "Patient/p1", "https://server/fhir/Patient/p1" or "Patient/p1/_history/2"
    reference = reference.split("/_history/")[0]
    return reference.startswith(prefix) or f"/{prefix}" in reference


def reference_id(reference: str) -> str:
    """The logical id of a reference.

    >>> reference_id("https://ehr/fhir/Appointment/a1/_history/3")
    'a1'
    """
    return reference.split("/_history/")[0].rstrip("/").rsplit("/", 1)[-1]


def select(node: Any, path: str) -> str | None:
    """The first non-empty string at ``path``, or ``None``."""
    for value in values(node, path):
        if isinstance(value, (str, int)) and str(value).strip():
            return str(value).strip()
    return None


def first(node: Any, paths: list[str]) -> tuple[str, str] | None:
    """The first ``(path, value)`` among ``paths`` that has a value."""
    for path in paths:
        value = select(node, path)
        if value is not None:
            return path, value
    return None
