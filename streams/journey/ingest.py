"""The edge of the pipeline: raw message bytes become a fact and an audit row, or a dead letter.

This is the only place that sees the raw ``patient_id``; it leaves as a pseudonym.

>>> from streams.journey.ingest import Edge
>>> from streams.journey.pseudonym import Pseudonymizer
>>> edge = Edge(Pseudonymizer(b"k" * 32))
>>> result = edge.accept(b'{"event_type": "nope"}', "journey.checkin", 0, 41)
>>> result.reason, result.row["offset"]
('unknown_event_type', 41)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.decode import Rejected, decode
from schemas.events import DEFAULT_TOPICS, Envelope, Family
from streams.journey.facts import FIELDS, Fact, fact_from_event
from streams.journey.pseudonym import Pseudonymizer


@dataclass(slots=True)
class Accepted:
    appointment_id: str
    fact: Fact
    row: dict[str, Any]


@dataclass(slots=True)
class DeadLetter:
    reason: str
    detail: str
    row: dict[str, Any]


class Edge:
    """Validates, pseudonymises and filters attributes; counts nothing, loses nothing."""

    def __init__(
        self,
        pseudonymize: Pseudonymizer,
        topics: Mapping[Family, str] = DEFAULT_TOPICS,
        attributes_allowlist: Iterable[str] = (),
    ):
        self.pseudonymize = pseudonymize
        self.topics = dict(topics)
        self.allowlist = tuple(attributes_allowlist)

    def accept(self, raw: bytes, topic: str | None, partition: int, offset: int, received_ms: int = 0) -> Accepted | DeadLetter:
        """``topic=None`` for events read from a file: the family then comes from ``event_type``."""
        verdict = decode(raw, topic, self.topics)
        if isinstance(verdict, Rejected):
            return DeadLetter(verdict.reason, verdict.detail, {
                "topic": topic or "file", "partition": partition, "offset": offset,
                "reason": verdict.reason, "detail": verdict.detail, "received_at": received_ms,
            })
        return self._accepted(verdict, topic, partition, offset, received_ms)

    def _accepted(self, event: Envelope, topic: str | None, partition: int, offset: int, received_ms: int) -> Accepted:
        fact = fact_from_event(event, self.pseudonymize(event.patient_id), self.allowlist)
        row = {
            "source": event.source,
            "event_id": event.event_id,
            "event_type": fact[1],
            "family": event.family,
            "occurred_at": fact[0],
            "appointment_id": event.appointment_id,
            "patient_key": fact[7],
            "site_id": event.site_id,
            "department": event.department,
            "provider_id": event.provider_id,
            "fields": orjson.dumps(fact[FIELDS], option=orjson.OPT_SORT_KEYS).decode(),
            "topic": topic or self.topics[event.family],
            "partition": partition,
            "offset": offset,
            "ingested_at": received_ms,
        }
        return Accepted(event.appointment_id, fact, row)
