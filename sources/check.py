"""Check an event dict against contract v1 (and the local ``event.withdrawn`` extension).

>>> contract_problem({"event_type": "patient.arrived", "schema_version": 1})
('event_id', 'missing_field: event_id: field required')
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.decode import Rejected, decode
from schemas.events import FAMILY_BY_TYPE, Family


def contract_problem(event: dict[str, Any]) -> tuple[str, str] | None:
    """``None`` if ``event`` is valid, else ``(field, "reason: detail")``."""
    from sources.withdrawal import WITHDRAWN, withdrawal_problem

    if event.get("event_type") == WITHDRAWN:
        problem = withdrawal_problem(event)
        return None if problem is None else (problem[0], f"invalid_value: {problem[1]}")
    verdict = decode(orjson.dumps(event))
    if isinstance(verdict, Rejected):
        field = verdict.detail.split(":", 1)[0]
        return field, f"{verdict.reason}: {verdict.detail}"
    return None


def family_of(event: dict[str, Any]) -> Family:
    """The family of a (valid) event, withdrawals included: it names the topic."""
    from sources.withdrawal import WITHDRAWN, withdrawal_family

    if event["event_type"] == WITHDRAWN:
        return withdrawal_family(event)
    return FAMILY_BY_TYPE[event["event_type"]]
