"""RFC 3339 text for an aware datetime: seconds, or milliseconds when there are any.

>>> from datetime import datetime, timedelta, timezone
>>> rfc3339(datetime(2026, 3, 2, 9, 5, tzinfo=timezone(timedelta(hours=-5))))
'2026-03-02T09:05:00-05:00'
>>> rfc3339(datetime(2026, 3, 2, 14, 5, 0, 250000, tzinfo=timezone.utc))
'2026-03-02T14:05:00.250+00:00'
"""

from __future__ import annotations

from datetime import datetime


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime")
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
