"""The edge of the pipeline: raw message bytes become a fact and an audit row, or a dead letter.

This is the only place that sees the raw ``patient_id``; it leaves as a pseudonym.

>>> from journey.ingest import Edge
>>> from journey.pseudonym import Pseudonymizer
>>> edge = Edge(Pseudonymizer(b"k" * 32))
>>> result = edge.accept(b'{"event_type": "nope"}', "journey.checkin", 0, 41)
>>> result.reason, result.row["offset"]
('unknown_event_type', 41)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from journey.facts import (
    DEPARTMENT,
    EVENT_ID,
    FIELDS,
    MS,
    PATIENT,
    PROVIDER,
    SITE,
    SOURCE,
    TYPE,
    Fact,
    copy_rank,
    fact_from_event,
)
from journey.pseudonym import Pseudonymizer
from schemas.decode import Rejected, decode
from schemas.events import DEFAULT_TOPICS, Envelope, Family


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
        max_future_skew_ms: int | None = None,
        max_message_bytes: int | None = None,
    ):
        self.pseudonymize = pseudonymize
        self.topics = dict(topics)
        self.allowlist = tuple(attributes_allowlist)
        self.max_future_skew_ms = max_future_skew_ms
        self.max_message_bytes = max_message_bytes

    def accept(self, raw: bytes, topic: str | None, partition: int, offset: int,
               received_ms: int | None = None) -> Accepted | DeadLetter:
        """``topic=None`` for events read from a file: the family then comes from ``event_type``.

        ``received_ms``: when the message reached the pipeline (wall clock); an event dated
        more than ``max_future_skew_ms`` after it is refused (``future_timestamp``): a clock
        that far ahead would otherwise pull event time forward. ``None`` (a file): not checked.
        """
        if self.max_message_bytes is not None and len(raw) > self.max_message_bytes:
            digest = hashlib.sha256(raw).hexdigest()
            return self.refuse("message_too_large", f"{len(raw)} bytes, over {self.max_message_bytes} "
                               f"(JOURNEYS_MAX_MESSAGE_KB); sha256 {digest}", topic, partition, offset, received_ms)
        verdict = decode(raw, topic, self.topics)
        if isinstance(verdict, Rejected):
            return self.refuse(verdict.reason, verdict.detail, topic, partition, offset, received_ms)
        accepted = self._accepted(verdict, topic, partition, offset, received_ms or 0)
        skew = self.max_future_skew_ms
        if skew is not None and received_ms is not None and accepted.fact[MS] > received_ms + skew:
            ahead = (accepted.fact[MS] - received_ms) / 60_000
            return self.refuse("future_timestamp", f"occurred_at: {ahead:.0f} min after the pipeline received it "
                               f"(at most {skew / 60_000:g} min allowed: JOURNEYS_MAX_FUTURE_SKEW_MIN)",
                               topic, partition, offset, received_ms)
        return accepted

    @staticmethod
    def refuse(reason: str, detail: str, topic: str | None, partition: int, offset: int,
               received_ms: int | None) -> DeadLetter:
        """The dead letter of a message refused for ``reason`` (its row for ``deadletters``)."""
        return DeadLetter(reason, detail, {
            "topic": topic or "file", "partition": partition, "offset": offset,
            "reason": reason, "detail": detail, "received_at": received_ms or 0,
        })

    def _accepted(self, event: Envelope, topic: str | None, partition: int, offset: int, received_ms: int) -> Accepted:
        values = event.__dict__  # the validated field values, without pydantic's attribute machinery
        fact = fact_from_event(event, self.pseudonymize(values["patient_id"]), self.allowlist)
        family = event.family
        row = {
            "source": fact[SOURCE],
            "event_id": fact[EVENT_ID],
            "event_type": fact[TYPE],
            "family": family,
            "occurred_at": fact[MS],
            "appointment_id": values["appointment_id"],
            "patient_key": fact[PATIENT],
            "site_id": fact[SITE],
            "department": fact[DEPARTMENT],
            "provider_id": fact[PROVIDER],
            "fields": orjson.dumps(fact[FIELDS], option=orjson.OPT_SORT_KEYS).decode(),
            "topic": topic or self.topics[family],
            "partition": partition,
            "offset": offset,
            "ingested_at": received_ms,
            "copy_rank": copy_rank(fact),
        }
        return Accepted(values["appointment_id"], fact, row)
