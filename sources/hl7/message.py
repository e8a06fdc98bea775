"""Parse one HL7 v2 message (python-hl7) and read fields by path, escapes decoded.

Line ends ``\\r``, ``\\n`` or ``\\r\\n`` and an MLLP frame around the message are accepted.

>>> msg = parse_message(b"\\x0bMSH|^~\\\\&|EHR|NORTH|||20260302||SIU^S12|M1|P|2.5\\n"
...                     b"SCH|A1|F1^EHR||||PAT^Patient\\\\T\\\\family\\n\\x1c\\r")
>>> msg.get("SCH-2.1"), msg.get("SCH-6.2"), msg.get("MSH-9.2"), msg.get("AIS-3")
('F1', 'Patient&family', 'S12', '')
>>> msg.has_segment("SCH"), msg.has_segment("TQ1")
(True, False)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import hl7
from hl7.util import unescape

from sources.hl7.mllp import unframe
from sources.hl7.paths import FieldPath

# Highlighting is dropped; formatting line breaks become "\n" (python-hl7 maps them to
# "\r" and highlighting to "_").
_APP_MAP = {"H": "", "N": "", ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": ""}


class HL7ParseError(ValueError):
    """The bytes are not an HL7 v2 message."""


def normalize(raw: bytes | str, encoding: str = "utf-8") -> str:
    """The message text with MLLP framing removed and every segment ending in ``\\r``."""
    if isinstance(raw, bytes):
        raw = unframe(raw)
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as error:
            raise HL7ParseError(f"not {encoding} text at byte {error.start}") from None
    else:
        text = raw.strip("\x0b\x1c")
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r \t\x0b\x1c")
    segments = [s for s in text.split("\r") if s.strip()]
    return "\r".join(segments)


@lru_cache(maxsize=256)
def _path(text: str) -> FieldPath:
    return FieldPath.parse(text)


def _child(node: Any, index: int) -> Any:
    """The ``index``-th (1-based) child of a python-hl7 container; a leaf string is its own first child."""
    if isinstance(node, str):
        return node if index == 1 else ""
    if index > len(node):
        return ""
    return node[index - 1]


class Message:
    """A parsed message: segments by name, raw and unescaped field access."""

    def __init__(self, parsed: hl7.Message) -> None:
        self.parsed = parsed
        self._segments: dict[str, list[Any]] = {}
        for segment in parsed:
            self._segments.setdefault(str(segment[0]).strip().upper(), []).append(segment)

    def has_segment(self, name: str) -> bool:
        return name in self._segments

    def segment_count(self, name: str) -> int:
        return len(self._segments.get(name, ()))

    def raw(self, path: str) -> str:
        """The field's text at ``path``, escapes untouched; ``""`` when absent."""
        where = _path(path)
        occurrences = self._segments.get(where.segment, [])
        if where.occurrence > len(occurrences):
            return ""
        segment = occurrences[where.occurrence - 1]
        # python-hl7 keeps MSH-1 (the field separator) as element 1, so MSH-n is element n;
        # other segments have their name as element 0 as well.
        if where.field >= len(segment):
            return ""
        field = segment[where.field]
        if where.segment in ("MSH", "BHS", "FHS") and where.field in (1, 2):
            return str(field)
        node: Any = field
        for index in (where.repetition, where.component, where.subcomponent):
            if isinstance(node, str):
                if index != 1:
                    return ""
                continue
            node = _child(node, index)
        return node if isinstance(node, str) else str(_first_leaf(node))

    def get(self, path: str) -> str:
        """The field's text at ``path`` with escape sequences decoded, stripped; ``""`` when absent."""
        value = self.raw(path)
        where = _path(path)
        if where.segment == "MSH" and where.field in (1, 2):
            return value
        if value and self.parsed.esc in value:
            value = unescape(self.parsed, value, _APP_MAP)
        return value.strip()

    def first(self, paths: list[str]) -> tuple[str, str] | None:
        """The first ``(path, value)`` among ``paths`` that has a value."""
        for path in paths:
            value = self.get(path)
            if value and value != '""':  # "" is HL7's explicit null
                return path, value
        return None


def _first_leaf(node: Any) -> Any:
    while not isinstance(node, str):
        if not len(node):
            return ""
        node = node[0]
    return node


def parse_message(raw: bytes | str, encoding: str = "utf-8") -> Message:
    """Parse ``raw`` into a :class:`Message`; :class:`HL7ParseError` when it is not HL7 v2."""
    text = normalize(raw, encoding)
    if not text.startswith("MSH") or len(text) < 8:
        raise HL7ParseError("a message starts with an MSH segment")
    try:
        parsed = hl7.parse(text)
    except Exception as error:  # python-hl7 raises several types on garbage
        raise HL7ParseError(f"python-hl7 could not parse the message: {error}") from None
    return Message(parsed)
