"""Split an HL7 file into messages: on MLLP frames if it has any, else on ``MSH|`` starts.

>>> split_hl7(b"MSH|^~\\\\&|A\\rPID|1\\nMSH|^~\\\\&|B\\r\\n")
[b'MSH|^~\\\\&|A\\rPID|1', b'MSH|^~\\\\&|B']
>>> split_hl7(b"\\x0bMSH|x\\r\\x1c\\r\\n\\x0bMSH|y\\r\\x1c\\r")
[b'MSH|x\\r', b'MSH|y\\r']
"""

from __future__ import annotations

import re

from sources.hl7.mllp import START, split_frames

_MSH_START = re.compile(rb"(?:^|[\r\n])(?=MSH\|)")


def split_hl7(data: bytes) -> list[bytes]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if START in data:
        messages, rest = split_frames(data)
        if rest.strip():
            messages.append(rest.lstrip(START))
        return messages
    parts = [p.strip(b"\r\n \t") for p in _MSH_START.split(data)]
    return [p for p in parts if p]
