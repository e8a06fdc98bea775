"""HL7 v2 DTM / TS values: ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``.

An offset in the value wins; a value without one is read in the source's IANA time zone,
and with no zone configured it is an error (never the machine's zone).

>>> from zoneinfo import ZoneInfo
>>> parse_dtm("20260302091500-0500", None).isoformat()
'2026-03-02T09:15:00-05:00'
>>> parse_dtm("202607011400", ZoneInfo("America/New_York")).isoformat()
'2026-07-01T14:00:00-04:00'
>>> parse_dtm("20260302091500.25+0100", None).isoformat()
'2026-03-02T09:15:00.250000+01:00'
>>> parse_dtm("202603020915", None)
Traceback (most recent call last):
...
sources.hl7.dtm.NoTimezone: 202603020915 has no UTC offset and the source has no timezone setting
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_DTM = re.compile(
    r"^(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})(?:(?P<s>\d{2})"
    r"(?:\.(?P<f>\d{1,4}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?$"
)


class BadTimestamp(ValueError):
    """Not a DTM value (or an impossible date)."""


class NoTimezone(ValueError):
    """A DTM value without offset, and no time zone to read it in."""


def parse_dtm(text: str, zone: ZoneInfo | None) -> datetime:
    value = text.strip()
    match = _DTM.match(value)
    if match is None:
        raise BadTimestamp(f"{value!r} is not an HL7 date/time (YYYYMMDDHHMM[SS[.S]][+/-ZZZZ])")
    fraction = match["f"] or ""
    try:
        naive = datetime(
            int(match["y"]), int(match["mo"] or 1), int(match["d"] or 1),
            int(match["h"] or 0), int(match["mi"] or 0), int(match["s"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError as error:
        raise BadTimestamp(f"{value!r}: {error}") from None
    if match["tz"]:
        sign = -1 if match["tz"][0] == "-" else 1
        hours, minutes = int(match["tz"][1:3]), int(match["tz"][3:5])
        if hours > 14 or minutes > 59:
            raise BadTimestamp(f"{value!r}: offset {match['tz']} is out of range")
        return naive.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    if zone is None:
        raise NoTimezone(f"{value} has no UTC offset and the source has no timezone setting")
    return naive.replace(tzinfo=zone)


def format_dtm(moment: datetime) -> str:
    """The DTM text of an aware datetime, seconds precision, with its offset.

    >>> format_dtm(parse_dtm("20260302091500-0500", None))
    '20260302091500-0500'
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("naive datetime")
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 100:04d}"
    return f"{text}{sign}{minutes // 60:02d}{minutes % 60:02d}"
