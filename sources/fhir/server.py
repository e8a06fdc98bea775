"""An aiohttp handler for FHIR notifications and resources: map, publish, then answer.

``POST /`` (or any path) with a Bundle (subscription notification, transaction, batch,
collection, searchset) or a resource, ``PUT /Appointment/{id}`` / ``/Encounter/{id}`` with a
resource. 200 only after ``publish`` returned (the source's state is committed then); 4xx
with an OperationOutcome whose ``expression`` names the bad element when mapping rejects
it; 503 when ``publish`` raised (nothing remembered, the sender retries).

>>> from sources.fhir import FHIRSource
>>> app = make_app(FHIRSource(), publish=None)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sources.base import Rejection, Source

Publish = Callable[[list[dict[str, Any]], bytes], Awaitable[None]]
FHIR_JSON = "application/fhir+json"

_ISSUE_CODES = {
    "fhir_parse_error": "structure",
    "fhir_invalid_resource": "invalid",
    "fhir_unsupported_resource": "not-supported",
    "missing_field": "required",
    "bad_timestamp": "value",
    "bad_value": "value",
    "contract_violation": "business-rule",
}


def operation_outcome(reason: str, path: str, detail: str, severity: str = "error") -> dict[str, Any]:
    """An OperationOutcome with one issue; ``expression`` is the offending element.

    >>> operation_outcome("missing_field", "Appointment.start", "no start")["issue"][0]["expression"]
    ['Appointment.start']
    """
    issue: dict[str, Any] = {
        "severity": severity,
        "code": _ISSUE_CODES.get(reason, "processing"),
        "details": {"coding": [{"system": "urn:journeys:source-reason", "code": reason}], "text": detail},
        "diagnostics": f"{reason}: {detail}",
    }
    if path:
        issue["expression"] = [path]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def make_app(source: Source, publish: Publish, max_body_bytes: int = 8 << 20) -> web.Application:
    """The aiohttp application serving ``source``; requests are handled one at a time."""
    import asyncio

    lock = asyncio.Lock()

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        async with lock:
            prepared = source.try_prepare(raw)
            if isinstance(prepared, Rejection):
                status = 422 if prepared.reason not in ("fhir_parse_error",) else 400
                body = operation_outcome(prepared.reason, prepared.path, prepared.detail)
                return web.json_response(body, status=status, content_type=FHIR_JSON)
            try:
                await publish(prepared.events, raw)
            except Exception as error:  # the publisher's failure, whatever it is (the publisher logs it)
                body = operation_outcome("publish_failed", "", str(error) or type(error).__name__)
                return web.json_response(body, status=503, content_type=FHIR_JSON)
            prepared.commit()
        outcome = operation_outcome("accepted", "", f"{len(prepared.events)} events published", severity="information")
        return web.json_response(outcome, status=200, content_type=FHIR_JSON)

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/{tail:.*}", receive)
    app.router.add_put("/{tail:.*}", receive)
    return app
