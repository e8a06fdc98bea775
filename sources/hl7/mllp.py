"""MLLP framing (``0x0B`` message ``0x1C 0x0D``) and deframing; the server is in ``server.py``.

>>> frame(b"MSH|^~\\\\&|A\\r")
b'\\x0bMSH|^~\\\\&|A\\r\\x1c\\r'
>>> unframe(frame(b"MSH|x\\r"))
b'MSH|x\\r'
>>> unframe(b"MSH|x\\r\\n")  # unframed input: only surrounding blanks go
b'MSH|x'
"""

from __future__ import annotations

START = b"\x0b"
END = b"\x1c\x0d"


def frame(message: bytes) -> bytes:
    """``message`` wrapped in an MLLP block."""
    return START + message + END


def unframe(data: bytes) -> bytes:
    """``data`` without the MLLP start and end bytes, if it has them."""
    data = data.strip(b" \t\r\n")
    if data.startswith(START):
        data = data[1:]
    if data.endswith(END):
        data = data[:-2]
    elif data.endswith(b"\x1c"):
        data = data[:-1]
    return data


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete MLLP messages in ``buffer`` and the incomplete rest.

    >>> split_frames(frame(b"A") + frame(b"B") + b"\\x0bC")
    ([b'A', b'B'], b'\\x0bC')
    """
    messages: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            return messages, b""
        end = buffer.find(END, start + 1)
        if end < 0:
            return messages, buffer[start:]
        messages.append(buffer[start + 1 : end])
        buffer = buffer[end + 2 :]
