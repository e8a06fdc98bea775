"""Contract timestamps as integers: epoch milliseconds, and the units to reckon with them.

Every layer below the edge (facts, rows, watermarks, the simulator's truth) keeps time
as integer epoch milliseconds in UTC; this module is the one home of that arithmetic.

>>> from datetime import datetime, timezone
>>> epoch_ms(datetime(2026, 1, 1, 0, 0, 0, 999999, tzinfo=timezone.utc))
1767225600999
>>> minutes_between(0, 90 * MINUTE_MS), minutes_between(None, 5)
(90.0, None)
"""

from __future__ import annotations

from datetime import datetime, timezone

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, exactly (integer arithmetic)."""
    # Field by field: twice as fast as ``// timedelta(milliseconds=1)``, and as exact
    # (days may be negative; seconds and microseconds never are).
    since = moment - _EPOCH
    return since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000


def minutes_between(earlier: int | None, later: int | None) -> float | None:
    """``later - earlier`` in minutes; ``None`` when either end is missing (SPEC: a metric
    is NULL when either end is missing)."""
    if earlier is None or later is None:
        return None
    return (later - earlier) / MINUTE_MS
