"""HL7 v2 acknowledgements (original mode): AA, AE with MSA-3 and ERR, AR.

>>> ack = build_ack(b"MSH|^~\\\\&|EHR|NORTH|JRN|HUB|20260302||SIU^S12|M1|P|2.5\\r", "AE",
...                 reason="missing_field", path="SCH-2.1", detail="appointment_id: no value",
...                 now="20260302090000+0000")
>>> print(ack.decode().replace("\\r", "\\n"))
MSH|^~\\&|JRN|HUB|EHR|NORTH|20260302090000+0000||ACK^S12^ACK|M1-ACK|P|2.5
MSA|AE|M1|missing_field at SCH-2.1: appointment_id: no value
ERR||SCH^1^2^1^1^1|101^Required field missing^HL70357|E||||missing_field at SCH-2.1: appointment_id: no value
<BLANKLINE>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from sources.hl7.dtm import format_dtm

AckCode = Literal["AA", "AE", "AR"]

# HL7 table 0357 (message error condition codes).
_ERROR_CODES: dict[str, tuple[str, str]] = {
    "missing_field": ("101", "Required field missing"),
    "bad_timestamp": ("102", "Data type error"),
    "no_timezone": ("102", "Data type error"),
    "bad_value": ("102", "Data type error"),
    "hl7_parse_error": ("100", "Segment sequence error"),
    "hl7_unsupported_event": ("201", "Unsupported event code"),
    "hl7_unsupported_version": ("203", "Unsupported version id"),
}
_INTERNAL = ("207", "Application internal error")
_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?)?$")


def escape(text: str) -> str:
    """Text safe in an HL7 field (default delimiters).

    >>> escape("a|b^c&d~e\\\\f")
    'a\\\\F\\\\b\\\\S\\\\c\\\\T\\\\d\\\\R\\\\e\\\\E\\\\f'
    """
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("&", "\\T\\").replace("~", "\\R\\")
    return out.replace("\r", " ").replace("\n", " ")


def _location(path: str) -> str:
    match = _LOCATION.match(path)
    if match is None:
        return ""
    seg, occ, field, rep, comp, sub = match.groups()
    if field is None:
        return f"{seg}^{occ or 1}"
    return f"{seg}^{occ or 1}^{field}^{rep or 1}^{comp or 1}^{sub or 1}"


def _msh_fields(message: bytes) -> dict[int, str]:
    text = message.decode("utf-8", "replace").replace("\r\n", "\r").replace("\n", "\r")
    text = text.strip("\x0b\x1c\r ")
    first = text.split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return {}
    parts = first[4:].split(first[3])
    return {i + 2: part for i, part in enumerate(parts)}  # MSH-2 is the encoding characters


def _component(value: str, index: int) -> str:
    parts = value.split("^")
    return parts[index - 1] if index <= len(parts) else ""


def build_ack(
    message: bytes, code: AckCode, reason: str = "", path: str = "", detail: str = "", now: str | None = None
) -> bytes:
    """The ACK for ``message`` (the raw bytes received, parseable or not)."""
    msh = _msh_fields(message)
    stamp = now or format_dtm(datetime.now(timezone.utc).replace(microsecond=0))
    control_id = msh.get(10, "")
    trigger = _component(msh.get(9, ""), 2)
    lines = [
        "|".join([
            "MSH", "^~\\&", msh.get(5, ""), msh.get(6, ""), msh.get(3, ""), msh.get(4, ""), stamp, "",
            f"ACK^{trigger}^ACK" if trigger else "ACK", f"{control_id}-ACK" if control_id else "ACK",
            _component(msh.get(11, "P"), 1) or "P", _component(msh.get(12, "2.5"), 1) or "2.5",
        ])
    ]
    text = escape(f"{reason} at {path}: {detail}") if reason else ""
    lines.append("|".join(["MSA", code, control_id, text[:80] if code != "AE" else text]))
    if reason:
        error_code, error_text = _ERROR_CODES.get(reason, _INTERNAL)
        severity = "E"
        lines.append("|".join(["ERR", "", _location(path), f"{error_code}^{error_text}^HL70357", severity, "", "", "", text]))
    return ("\r".join(lines) + "\r").encode()


@dataclass(frozen=True, slots=True)
class Ack:
    """What an ACK says: MSA-1 (``AA``/``AE``/``AR``), MSA-2 (the control id acknowledged), MSA-3."""

    code: str
    control_id: str
    text: str


def parse_ack(ack: bytes) -> Ack:
    """The MSA segment of an ACK (a sender's view; unescaping is left to the reader).

    >>> parse_ack(build_ack(b"MSH|^~\\\\&|A|B|C|D|20260302||ADT^A31|9|P|2.5\\r", "AE", "hl7_unsupported_event", "MSH-9", "no"))
    Ack(code='AE', control_id='9', text='hl7_unsupported_event at MSH-9: no')
    """
    for segment in ack.decode("utf-8", "replace").replace("\n", "\r").split("\r"):
        if segment.startswith("MSA|"):
            fields = segment.split("|") + ["", "", ""]
            return Ack(fields[1], fields[2], fields[3])
    raise ValueError("not an HL7 ACK: no MSA segment")
