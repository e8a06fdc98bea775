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

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from schemas.events import Envelope

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


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, exactly (integer arithmetic).

    >>> epoch_ms(datetime(2026, 1, 1, 0, 0, 0, 999999, tzinfo=timezone.utc))
    1767225600999
    """
    return (moment - _EPOCH) // _ONE_MS


def fact_from_event(event: Envelope, patient_key: str, allowlist: Iterable[str] = ()) -> Fact:
    fields: dict[str, Any] = {}
    for name in type(event).model_fields:
        if name in _ENVELOPE_FIELDS:
            continue
        value = getattr(event, name)
        if value is None:
            continue
        fields[name] = epoch_ms(value) if isinstance(value, datetime) else value
    if event.attributes:
        kept = {k: event.attributes[k] for k in allowlist if k in event.attributes}
        if kept:
            fields["attributes"] = kept
    return [
        epoch_ms(event.occurred_at),
        event.event_type,  # type: ignore[attr-defined]
        event.source,
        event.event_id,
        event.site_id,
        event.department,
        event.provider_id,
        patient_key,
        fields,
    ]


def sort_key(fact: Fact) -> tuple[int, str, str]:
    """Event-time order with a deterministic tie-break."""
    return (fact[MS], fact[SOURCE], fact[EVENT_ID])
