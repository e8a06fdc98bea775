"""HL7 v2 field paths: ``SEG-F[.C[.S]]``, optionally ``SEG[n]`` (occurrence) and ``F[r]`` (repetition).

Counting starts at 1, as in the standard. A path that stops at a field or component takes
the first component / sub-component below it (``TQ1-7`` is ``TQ1-7.1``).

>>> FieldPath.parse("PID-3.1")
FieldPath(segment='PID', field=3, component=1, subcomponent=1, occurrence=1, repetition=1)
>>> str(FieldPath.parse("AIS[2]-3[1].2"))
'AIS[2]-3.2'
>>> FieldPath.parse("PID.3")
Traceback (most recent call last):
...
ValueError: 'PID.3' is not an HL7 field path (SEG-F[.C[.S]], e.g. SCH-2.1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATH = re.compile(
    r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<occ>[1-9]\d*)\])?-(?P<field>[1-9]\d*)(?:\[(?P<rep>[1-9]\d*)\])?"
    r"(?:\.(?P<comp>[1-9]\d*)(?:\.(?P<sub>[1-9]\d*))?)?$"
)


@dataclass(frozen=True, slots=True)
class FieldPath:
    segment: str
    field: int
    component: int = 1
    subcomponent: int = 1
    occurrence: int = 1
    repetition: int = 1

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        match = _PATH.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not an HL7 field path (SEG-F[.C[.S]], e.g. SCH-2.1)")
        return cls(
            segment=match["seg"],
            field=int(match["field"]),
            component=int(match["comp"] or 1),
            subcomponent=int(match["sub"] or 1),
            occurrence=int(match["occ"] or 1),
            repetition=int(match["rep"] or 1),
        )

    def __str__(self) -> str:
        text = self.segment + (f"[{self.occurrence}]" if self.occurrence != 1 else "") + f"-{self.field}"
        if self.repetition != 1:
            text += f"[{self.repetition}]"
        if self.component != 1 or self.subcomponent != 1:
            text += f".{self.component}"
        if self.subcomponent != 1:
            text += f".{self.subcomponent}"
        return text


def check_path(text: str) -> str:
    """Validate ``text`` as a path and return it (for config validators)."""
    FieldPath.parse(text)
    return text.strip()
