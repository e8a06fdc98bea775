"""Facts: the compact, PHI-free form in which a journey keeps its events.

A fact is a plain list so that it round-trips through JSON (the state store and its
changelog) unchanged::

    [occurred_ms, event_type, source, event_id, site_id, department, provider_id,
     patient_key, fields]

``fields`` holds the family fields (timestamps as epoch milliseconds) and the
allow-listed ``attributes``. The raw ``patient_id`` is replaced by its pseudonym
before a fact exists, so no state store or topic downstream of the edge holds it.

>>> from datetime import datetime, timezone
>>> from schemas.events import PatientCheckedIn
>>> event = PatientCheckedIn(event_id="e1", event_type="patient.checked_in", schema_version=1,
...     occurred_at=datetime(2026, 3, 2, 14, 55, tzinfo=timezone.utc), source="kiosk",
...     patient_id="p1", appointment_id="a1", site_id="s1", department="cardiology",
...     channel="kiosk", attributes={"kiosk_id": "k7", "phone": "555"})
>>> fact_from_event(event, patient_key="ab12", allowlist=("kiosk_id",))
[1772463300000, 'patient.checked_in', 'kiosk', 'e1', 's1', 'cardiology', None, 'ab12', {'channel': 'kiosk', 'attributes': {'kiosk_id': 'k7'}}]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from schemas.events import Envelope
from schemas.timestamps import epoch_ms

Fact = list[Any]

# Positions in a fact.
MS, TYPE, SOURCE, EVENT_ID, SITE, DEPARTMENT, PROVIDER, PATIENT, FIELDS = range(9)

_ENVELOPE_FIELDS = frozenset(
    {
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
        "source",
        "patient_id",
        "appointment_id",
        "site_id",
        "department",
        "provider_id",
        "attributes",
    }
)


def fact_from_event(event: Envelope, patient_key: str, allowlist: Iterable[str] = ()) -> Fact:
    values = event.__dict__  # the validated field values, without pydantic's attribute machinery
    fields: dict[str, Any] = {}
    for name in _family_fields(type(event)):
        value = values[name]
        if value is None:
            continue
        fields[name] = epoch_ms(value) if isinstance(value, datetime) else value
    attributes = values["attributes"]
    if attributes:
        kept = {k: attributes[k] for k in allowlist if k in attributes}
        if kept:
            fields["attributes"] = kept
    return [
        epoch_ms(values["occurred_at"]),
        values["event_type"],
        values["source"],
        values["event_id"],
        values["site_id"],
        values["department"],
        values["provider_id"],
        patient_key,
        fields,
    ]


# The fields of each event model beyond the envelope, in declaration order (looked up once per model).
_FAMILY_FIELDS: dict[type[Envelope], tuple[str, ...]] = {}


def _family_fields(model: type[Envelope]) -> tuple[str, ...]:
    names = _FAMILY_FIELDS.get(model)
    if names is None:
        names = _FAMILY_FIELDS[model] = tuple(name for name in model.model_fields if name not in _ENVELOPE_FIELDS)
    return names


def fact_digest(fact: Fact) -> int:
    """A 63-bit digest of a fact's canonical bytes: which of two copies of one event wins.

    The smallest digest wins, in the journey state and in ``journeys.events`` (whose
    ``copy_rank`` is :func:`copy_rank`), so the choice never depends on arrival order.

    >>> fact_digest([1, "patient.arrived", "kiosk", "e1", "s1", "d", None, "pk", {}]) < 2**63
    True
    """
    canonical = orjson.dumps(fact, option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "big") >> 1


def copy_rank(fact: Fact) -> int:
    """``journeys.events``' ReplacingMergeTree version: larger for the winning copy."""
    return (1 << 63) - fact_digest(fact)
