"""Time helpers: every instant in the simulator is an ``int`` of epoch milliseconds (UTC).

Wire timestamps are RFC 3339 in the *site-local* offset of that instant (daylight
saving time included), with milliseconds or whole seconds depending on the source; a
few sources write UTC with ``Z``. Formatting is hand-rolled and cached because it
runs once per event (150 M times for a year of a large network).

>>> from zoneinfo import ZoneInfo
>>> import datetime as dt
>>> ny = ZoneInfo("America/New_York")
>>> ms = local_ms(dt.date(2026, 3, 2), 9 * 60 + 55, ny)
>>> rfc3339(ms + 123, ny)
'2026-03-02T09:55:00.123-05:00'
>>> rfc3339(ms + 123, ny, millis=False)
'2026-03-02T09:55:00-05:00'
>>> rfc3339(ms, None)
'2026-03-02T14:55:00.000Z'
>>> rfc3339(local_ms(dt.date(2026, 3, 9), 8 * 60, ny), ny)  # after the DST change
'2026-03-09T08:00:00.000-04:00'
>>> iso_utc(ms)
'2026-03-02T14:55:00.000Z'
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from schemas.timestamps import DAY_MS, MINUTE_MS

_UTC = dt.timezone.utc
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# DST transitions fall on quarter hours of UTC in every zone we use: cache the offset
# per quarter hour rather than asking zoneinfo for every event.
_OFFSET_BUCKET = 15 * MINUTE_MS


def local_ms(day: dt.date, minute_of_day: float, tz: ZoneInfo) -> int:
    """Epoch ms of the wall-clock time ``minute_of_day`` (minutes after midnight) on ``day`` in ``tz``."""
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    return int(midnight.timestamp() * 1000) + int(round(minute_of_day * MINUTE_MS))


@lru_cache(maxsize=65536)
def _offset_ms(tz: ZoneInfo, bucket: int) -> int:
    moment = dt.datetime.fromtimestamp(bucket * _OFFSET_BUCKET / 1000, tz)
    offset = moment.utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def offset_ms(ms: int, tz: ZoneInfo) -> int:
    """The UTC offset of ``tz`` at instant ``ms``, in ms."""
    return _offset_ms(tz, ms // _OFFSET_BUCKET)


@lru_cache(maxsize=8192)
def _date_text(day_number: int) -> str:
    return dt.date.fromordinal(_EPOCH_ORDINAL + day_number).isoformat()


@lru_cache(maxsize=256)
def _offset_text(offset: int) -> str:
    if offset == 0:
        return "+00:00"
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // MINUTE_MS
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def rfc3339(ms: int, tz: ZoneInfo | None, millis: bool = True) -> str:
    """Format ``ms`` in ``tz``'s local offset (``None``: UTC with ``Z``)."""
    offset = 0 if tz is None else offset_ms(ms, tz)
    local = ms + offset
    day_number, rest = divmod(local, DAY_MS)
    seconds, milli = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    suffix = "Z" if tz is None else _offset_text(offset)
    if millis:
        return f"{_date_text(day_number)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}{suffix}"
    return f"{_date_text(day_number)}T{hours:02d}:{minutes:02d}:{seconds:02d}{suffix}"


def iso_utc(ms: int) -> str:
    """The truth's timestamp format: ISO 8601 UTC with milliseconds and ``Z``."""
    return rfc3339(ms, None)


def parse_ms(text: str) -> int:
    """Epoch ms of an RFC 3339 timestamp with offset (the inverse of :func:`rfc3339`).

    >>> parse_ms('2026-03-02T09:55:00.123-05:00') == parse_ms('2026-03-02T14:55:00.123Z')
    True
    """
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"naive timestamp: {text!r}")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def utc_day_start(day: dt.date) -> int:
    """Epoch ms of 00:00 UTC on ``day``."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS
