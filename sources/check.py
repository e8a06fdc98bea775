"""Check an event dict against contract v1 (``event.withdrawn`` included: it is in ``schemas``).

>>> contract_problem({"event_type": "patient.arrived", "schema_version": 1})
('event_id', 'missing_field: event_id: field required')
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.decode import Rejected, decode


def contract_problem(event: dict[str, Any]) -> tuple[str, str] | None:
    """``None`` if ``event`` is valid, else ``(field, "reason: detail")``."""
    verdict = decode(orjson.dumps(event))
    if isinstance(verdict, Rejected):
        field = verdict.detail.split(":", 1)[0]
        return field, f"{verdict.reason}: {verdict.detail}"
    return None
