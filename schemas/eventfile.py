"""Event files (JSON Lines, one event per line) and routing an event to its family's topic.

Reading is lazy (a 1M-line file is never held in memory) and keeps line numbers, so a
verdict can point at the line. Blank lines are skipped; line numbers still count them.

>>> import io
>>> from schemas.eventfile import read_event_lines, route
>>> lines = list(read_event_lines(io.BytesIO(b'{"event_type": "wait.started", "appointment_id": "a1"}\\n\\n{oops\\n')))
>>> [number for number, _ in lines]
[1, 3]
>>> route(lines[0][1])
Route(family='waits', key=b'a1')
>>> route(lines[1][1]).reason
'malformed_json'

Routing reads only ``event_type`` and ``appointment_id``: an event that routes can still
be invalid (a missing field, say); the pipeline's decoder gives that verdict, with the
topic/partition/offset it read the event from. Only what cannot be routed at all
(broken JSON, no or unknown ``event_type``) needs a verdict before it reaches Kafka.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from schemas.decode import Rejected
from schemas.events import DEFAULT_TOPICS, FAMILY_BY_TYPE, WITHDRAWN, Family

_BOM = b"\xef\xbb\xbf"


def read_event_lines(source: str | Path | BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_bytes)`` for each non-blank line; numbers start at 1.

    ``source`` is a path, ``"-"`` for standard input, or a binary file object. The line
    ending (``\\n`` or ``\\r\\n``) is removed; the bytes are otherwise untouched, so what
    is sent to Kafka is exactly what the file holds. A UTF-8 byte order mark at the
    start of the file is an artefact of the editor, not part of the first event: dropped.
    """
    with ExitStack() as stack:
        if isinstance(source, (str, Path)):
            stream: BinaryIO = (
                sys.stdin.buffer if str(source) == "-" else stack.enter_context(open(source, "rb"))  # noqa: SIM115
            )
        else:
            stream = source
        for number, line in enumerate(stream, start=1):
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            yield number, line


@dataclass(frozen=True, slots=True)
class Route:
    """Where an event goes: its family (hence topic) and its message key.

    ``key`` is ``appointment_id`` as UTF-8, or ``None`` when the event has no usable
    one (the event is invalid then, and the pipeline will dead-letter it).
    """

    family: Family
    key: bytes | None


def route(raw: bytes) -> Route | Rejected:
    """The family and key of ``raw``, or why it cannot be routed.

    Reasons are those of :func:`schemas.decode.decode`: ``malformed_json`` (not JSON, not
    UTF-8, not an object), ``missing_field`` (no ``event_type``) or ``unknown_event_type``.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return Rejected("malformed_json", f"not valid JSON: {error}")
    if not isinstance(data, dict):
        return Rejected("malformed_json", "the message is not a JSON object")
    if "event_type" not in data:
        return Rejected("missing_field", "event_type: field required")
    event_type = data["event_type"]
    if event_type == WITHDRAWN:  # a correction goes where the type it withdraws goes
        event_type = data.get("withdrawn_event_type")
    family = FAMILY_BY_TYPE.get(event_type) if isinstance(event_type, str) else None
    if family is None:
        return Rejected("unknown_event_type", f"event_type: {event_type!r} is not an event type of contract v1")
    appointment_id = data.get("appointment_id")
    key = appointment_id.encode() if isinstance(appointment_id, str) and appointment_id else None
    return Route(family, key)


def topic_for(raw: bytes, topics: Mapping[Family, str] = DEFAULT_TOPICS) -> str | Rejected:
    """The topic ``raw`` belongs on, or why it has none.

    >>> topic_for(b'{"event_type": "session.ended"}')
    'journey.telehealth'
    """
    verdict = route(raw)
    return verdict if isinstance(verdict, Rejected) else topics[verdict.family]
