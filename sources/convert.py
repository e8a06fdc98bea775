"""``convert_files``: native message files in, contract events out as JSON lines.

Reasons go to ``err`` as ``file: message N: reason at path: detail``; the return value is
1 if any message was rejected, else 0 (``journeys hl7 convert`` / ``journeys fhir convert``).

>>> import io, pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "day.hl7").write_bytes(
...     b"MSH|^~\\\\&|EHR|NORTH|||20260302095500-0500||ADT^A10|M1|P|2.5\\r"
...     b"PID|||MRN1\\rPV1||O|CARD^^^NORTH||||||^|cardiology|||||||||V1\\r"
...     b"MSH|^~\\\\&|EHR|NORTH|||20260302095600-0500||ADT^A31|M2|P|2.5\\r")
>>> out, err = io.StringIO(), io.StringIO()
>>> convert_files("hl7", [folder / "day.hl7"], out=out, err=err)
1
>>> len(out.getvalue().splitlines()), err.getvalue().split(": ", 1)[1][:41]
(1, 'message 2: hl7_unsupported_event at MSH-9')
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import BaseModel

from sources.base import Rejection, Source
from sources.registry import load_source


def convert_files(
    source: str | Source,
    paths: Iterable[str | Path],
    out: TextIO | None = None,
    err: TextIO | None = None,
    config: str | Path | BaseModel | Mapping[str, Any] | None = None,
) -> int:
    """Map every message of every file with one source instance (its state spans the files).

    ``source`` is a source name (loaded with ``config``) or a loaded source: a command loads
    it first, so that a bad configuration is told apart from an unreadable input file.
    ``out``/``err`` default to the streams current at the call (not at import: a redirected
    or captured ``sys.stdout`` is honoured).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if isinstance(source, str):
        source = load_source(source, config)
    failed = False
    for path in paths:
        data = Path(path).read_bytes()
        for index, message in enumerate(source.split_messages(data), start=1):
            result = source.map(message)
            if isinstance(result, Rejection):
                failed = True
                err.write(f"{path}: message {index}: {result.reason} at {result.path}: {result.detail}\n")
                continue
            for event in result:
                out.write(orjson.dumps(event).decode() + "\n")
    return 1 if failed else 0
