"""Expand a panel's SQL the way Grafana and the ClickHouse plugin do before ClickHouse runs it.

Three steps, in the plugin's order:

1. ``$__conditionalAll(condition, $var)`` (plugin frontend, ``applyConditionalAll``):
   the condition, or ``1=1`` when the variable is "All" or empty;
2. dashboard variables (Grafana's template service with the plugin's formatter):
   ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``;
3. time macros (plugin backend, ``pkg/macros/macros.go`` through the SDK's
   ``sqlutil.Interpolate``): ``$__timeFilter(col)``, ``$__timeFilter_ms(col)``,
   ``$__fromTime``, ``$__toTime``, ``$__fromTime_ms``, ``$__toTime_ms``,
   ``$__timeInterval(col)``, ``$__timeInterval_ms(col)``, ``$__interval_s``,
   ``$__dateFilter(col)``, ``$__dateTimeFilter(d, t)`` / ``$__dt(d, t)``.

The backend finds a macro's arguments by scanning forward from the macro name to the
first ``(`` *anywhere* later in the text (stopping early only at an unmatched ``)``),
and splits them on every comma. This module copies that behaviour on purpose, so a
test catches SQL that Grafana would mangle: write argument-less macros in parentheses,
``($__toTime)``, and never put a comma inside a macro's arguments.

>>> from datetime import UTC, datetime, timedelta
>>> window = TimeRange(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
>>> site = Selection("site", ["north", "south"])
>>> print(expand(
...     "SELECT $__timeInterval(t) AS time, count() FROM x "
...     "WHERE $__timeFilter(t) AND $__conditionalAll(site_id IN (${site:singlequote}), $site) GROUP BY time",
...     window, timedelta(minutes=5), [site]))
SELECT toStartOfInterval(toDateTime(t), INTERVAL 300 second) AS time, count() FROM x WHERE t >= toDateTime(1772409600) AND t <= toDateTime(1772496000) AND site_id IN ('north','south') GROUP BY time
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ALL = "$__all"  # Grafana's value for the "All" option


class MacroError(ValueError):
    """A macro is used in a way the plugin would reject or expand differently than intended."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time picker range (timezone-aware)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("TimeRange needs timezone-aware datetimes")
        if self.end < self.start:
            raise ValueError("TimeRange ends before it starts")


@dataclass(frozen=True)
class Selection:
    """The current value of one dashboard variable.

    ``value`` is a string (single-value variable) or a list (multi-value variable);
    ``ALL`` (or ``[ALL]``) means the "All" option, which Grafana expands to every
    option (``options``) or to the variable's custom ``all_value``.

    >>> Selection("site", ALL, options=("a", "b")).is_all
    True
    >>> Selection("site", ["a"]).is_all
    False
    """

    name: str
    value: str | list[str]
    options: Sequence[str] = field(default_factory=tuple)
    all_value: str | None = None

    @property
    def is_all(self) -> bool:
        return self.value == ALL or self.value == [ALL]

    def resolved(self) -> str | list[str]:
        """The value Grafana formats: "All" becomes every option."""
        if self.is_all:
            return list(self.options)
        return self.value


# -- 1. $__conditionalAll (frontend) ---------------------------------------------------


def _macro_args_frontend(text: str, open_index: int) -> list[str] | None:
    """The plugin frontend's getMacroArgs: split at top-level commas, raw (untrimmed) text."""
    args: list[str] = []
    depth = 0
    last = open_index + 1
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 1:
            args.append(text[last:index])
            last = index + 1
        if depth == 0:
            args.append(text[last:index])
            return args
    return None


def apply_conditional_all(sql: str, variables: Iterable[Selection]) -> str:
    """Replace every ``$__conditionalAll(condition, $var)``, last occurrence first.

    >>> apply_conditional_all("WHERE $__conditionalAll(a IN ($a), $a)", [Selection("a", ALL)])
    'WHERE 1=1'
    >>> apply_conditional_all("WHERE $__conditionalAll(a IN ($a), $a)", [Selection("a", ["x"])])
    'WHERE a IN ($a)'
    >>> apply_conditional_all("WHERE $__conditionalAll(a IN ($a), $a)", [Selection("a", [])])
    'WHERE 1=1'
    """
    by_name = {v.name: v for v in variables}
    macro = "$__conditionalAll("
    index = sql.rfind(macro)
    while index != -1:
        args = _macro_args_frontend(sql, index + len(macro) - 1)
        if args is None or len(args) != 2:
            return sql  # the plugin gives up and leaves the text as it is
        name = args[1].strip()[1:]
        selection = by_name.get(name)
        phrase = args[0]
        if selection is not None:
            # JS: current.value.toString(): a list joins with commas.
            value = selection.value if isinstance(selection.value, str) else ",".join(selection.value)
            if value in ("", ALL):
                phrase = "1=1"
        sql = sql.replace(f"{macro}{args[0]},{args[1]})", phrase, 1)
        index = sql.rfind(macro)
    return sql


# -- 2. dashboard variables (Grafana template service) ----------------------------------

# Grafana's variableRegex: $var | [[var:fmt]] | ${var.fieldPath:fmt}
_VARIABLE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _plugin_format(value: str | list[str]) -> str:
    # The ClickHouse plugin's own formatter, used when the SQL names no format.
    if isinstance(value, list):
        return "'" + "','".join(value) + "'"
    return value


def _quote_each(value: str | list[str], quote: Callable[[str], str]) -> str:
    return ",".join(quote(v) for v in value) if isinstance(value, list) else quote(value)


_FORMATS: dict[str, Callable[[str | list[str]], str]] = {
    "raw": lambda v: ",".join(v) if isinstance(v, list) else v,
    "csv": lambda v: ",".join(v) if isinstance(v, list) else v,
    "pipe": lambda v: "|".join(v) if isinstance(v, list) else v,
    "singlequote": lambda v: _quote_each(v, lambda s: "'" + s.replace("'", "\\'") + "'"),
    "doublequote": lambda v: _quote_each(v, lambda s: '"' + s.replace('"', '\\"') + '"'),
    "sqlstring": lambda v: _quote_each(v, lambda s: "'" + s.replace("'", "''") + "'"),
}


def interpolate_variables(sql: str, variables: Iterable[Selection]) -> str:
    """Replace dashboard variables; unknown names (macros like ``$__timeFilter``) stay.

    >>> sites = Selection("site", ["a", "b"])
    >>> interpolate_variables("IN ($site) IN (${site:singlequote}) IN (${site:csv})", [sites])
    "IN ('a','b') IN ('a','b') IN (a,b)"
    >>> interpolate_variables("x = '$site' AND $__toTime", [Selection("site", "north")])
    "x = 'north' AND $__toTime"
    >>> interpolate_variables("IN (${site:singlequote})", [Selection("site", ALL, options=("a", "b"))])
    "IN ('a','b')"
    """
    by_name = {v.name: v for v in variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        selection = by_name.get(name)
        if selection is None:
            return match.group(0)
        if selection.is_all and selection.all_value is not None:
            return selection.all_value  # Grafana does not format a custom all value
        value = selection.resolved()
        if fmt is None:
            return _plugin_format(value)
        if fmt not in _FORMATS:
            raise MacroError(f"variable format {fmt!r} is not supported here (${{{name}:{fmt}}})")
        return _FORMATS[fmt](value)

    return _VARIABLE_RE.sub(replace, sql)


# -- 3. backend macros (pkg/macros/macros.go via sqlutil.Interpolate) ------------------


def _seconds(moment: datetime) -> int:
    return math.floor(moment.timestamp())  # Go's time.Unix()


def _millis(moment: datetime) -> int:
    return math.floor(moment.timestamp() * 1000)  # Go's time.UnixMilli()


def _date(moment: datetime) -> str:
    return f"toDate('{moment.astimezone(UTC).strftime('%Y-%m-%d')}')"


def _one(args: list[str], name: str) -> str:
    if len(args) != 1 or not args[0]:
        raise MacroError(f"$__{name}: expected 1 argument, received {len(args)} ({args!r})")
    return args[0]


BackendMacro = Callable[[TimeRange, timedelta, list[str]], str]


def _time_filter(r: TimeRange, _: timedelta, args: list[str]) -> str:
    column = _one(args, "timeFilter")
    return f"{column} >= toDateTime({_seconds(r.start)}) AND {column} <= toDateTime({_seconds(r.end)})"


def _time_filter_ms(r: TimeRange, _: timedelta, args: list[str]) -> str:
    column = _one(args, "timeFilter_ms")
    return (
        f"{column} >= fromUnixTimestamp64Milli({_millis(r.start)}) "
        f"AND {column} <= fromUnixTimestamp64Milli({_millis(r.end)})"
    )


def _date_filter(r: TimeRange, _: timedelta, args: list[str]) -> str:
    column = _one(args, "dateFilter")
    return f"{column} >= {_date(r.start)} AND {column} <= {_date(r.end)}"


def _date_time_filter(r: TimeRange, _: timedelta, args: list[str]) -> str:
    if len(args) != 2:
        raise MacroError(f"$__dateTimeFilter: expected 2 arguments, received {len(args)}")
    date_col, time_col = args
    return (
        f"({date_col} >= {_date(r.start)} AND {date_col} <= {_date(r.end)}) AND "
        f"({time_col} >= toDateTime({_seconds(r.start)}) AND {time_col} <= toDateTime({_seconds(r.end)}))"
    )


def _time_interval(_: TimeRange, interval: timedelta, args: list[str]) -> str:
    seconds = int(max(interval.total_seconds(), 1))
    return f"toStartOfInterval(toDateTime({_one(args, 'timeInterval')}), INTERVAL {seconds} second)"


def _time_interval_ms(_: TimeRange, interval: timedelta, args: list[str]) -> str:
    millis = int(max(interval // timedelta(milliseconds=1), 1))
    return f"toStartOfInterval(toDateTime64({_one(args, 'timeInterval_ms')}, 3), INTERVAL {millis} millisecond)"


BACKEND_MACROS: dict[str, BackendMacro] = {
    "fromTime": lambda r, _i, _a: f"toDateTime({_seconds(r.start)})",
    "toTime": lambda r, _i, _a: f"toDateTime({_seconds(r.end)})",
    "fromTime_ms": lambda r, _i, _a: f"fromUnixTimestamp64Milli({_millis(r.start)})",
    "toTime_ms": lambda r, _i, _a: f"fromUnixTimestamp64Milli({_millis(r.end)})",
    "timeFilter": _time_filter,
    "timeFilter_ms": _time_filter_ms,
    "dateFilter": _date_filter,
    "dateTimeFilter": _date_time_filter,
    "dt": _date_time_filter,
    "timeInterval": _time_interval,
    "timeInterval_ms": _time_interval_ms,
    "interval_s": lambda _r, i, _a: str(int(max(i.total_seconds(), 1))),
}


def _backend_matches(sql: str, name: str) -> list[tuple[str, str | None]]:
    """sqlutil.getMacroMatches: (matched text, raw argument text or None)."""
    found: list[tuple[str, str | None]] = []
    for match in re.finditer(rf"\$__{re.escape(name)}\b", sql):
        start = match.start()
        rest = sql[start:]
        depth = 0
        arg_start = 0
        end = 0
        for index, char in enumerate(rest):
            if depth == 0 and end > 0:
                break
            if char == "(":
                depth += 1
                arg_start = arg_start or index + 1
            elif char == ")":
                if depth == 0:
                    end = 0
                    break
                depth -= 1
                end = index + 1
        if end == 0:
            end = match.end() - start
            arg_start = 0
        found.append((rest[:end], rest[arg_start : end - 1] if arg_start else None))
    return found


def _interpolate_backend(sql: str, time_range: TimeRange, interval: timedelta, order: Sequence[str]) -> str:
    for name in order:
        for text, raw_args in _backend_matches(sql, name):
            args = [a.strip() for a in raw_args.split(",")] if raw_args is not None else []
            sql = sql.replace(text, BACKEND_MACROS[name](time_range, interval, args))
    return sql


def apply_backend_macros(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    """Expand the time macros; refuse SQL whose result would depend on Go's map order.

    >>> from datetime import UTC, datetime, timedelta
    >>> r = TimeRange(datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 2, 9, 0, 0, 500000, tzinfo=UTC))
    >>> apply_backend_macros("t >= ($__fromTime) AND t <= ($__toTime_ms)", r, timedelta(seconds=30))
    't >= (toDateTime(1772438400)) AND t <= (fromUnixTimestamp64Milli(1772442000500))'
    >>> apply_backend_macros("$__timeFilter_ms(t) AND $__interval_s > 0", r, timedelta(milliseconds=200))
    't >= fromUnixTimestamp64Milli(1772438400000) AND t <= fromUnixTimestamp64Milli(1772442000500) AND 1 > 0'
    >>> apply_backend_macros("$__timeInterval_ms(t)", r, timedelta(seconds=2))
    'toStartOfInterval(toDateTime64(t, 3), INTERVAL 2000 millisecond)'

    An argument-less macro followed (anywhere later) by a parenthesis swallows it, as
    in the plugin; that is why our SQL writes ``($__toTime)``:

    >>> apply_backend_macros("t <= $__toTime AND x IN (1)", r, timedelta(seconds=1))
    Traceback (most recent call last):
    ...
    dashboards.macros.MacroError: $__toTime swallows the parenthesis after it ('$__toTime AND x IN (1)'): write ($__toTime)
    """
    names = sorted(BACKEND_MACROS)
    first = _interpolate_backend(sql, time_range, interval, names)
    second = _interpolate_backend(sql, time_range, interval, names[::-1])
    if first != second:
        raise MacroError(f"macro expansion depends on the order the plugin applies macros in: {sql!r}")
    if "$__" in first:
        raise MacroError(f"unknown macro left in the SQL: {first!r}")
    # An argument-less macro that grabbed a later parenthesis loses SQL text silently:
    for name in ("fromTime", "toTime", "fromTime_ms", "toTime_ms", "interval_s"):
        for text, raw_args in _backend_matches(sql, name):
            if raw_args is not None:
                raise MacroError(f"$__{name} swallows the parenthesis after it ({text!r}): write ($__{name})")
    return first


# -- all together ------------------------------------------------------------------------


def expand(
    sql: str, time_range: TimeRange, interval: timedelta, variables: Iterable[Selection] = ()
) -> str:
    """The SQL ClickHouse receives from Grafana for this range, interval and variables."""
    variables = list(variables)
    return apply_backend_macros(
        interpolate_variables(apply_conditional_all(sql, variables), variables), time_range, interval
    )


# Grafana's rangeutil.roundInterval table: (upper bound ms, interval ms).
_ROUND_INTERVALS: tuple[tuple[float, int], ...] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (150000, 120000), (270000, 300000), (450000, 300000),
    (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
    (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
    (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
    (3628800000, 2592000000),
)


def grafana_interval(
    time_range: TimeRange, max_data_points: int = 1000, min_interval: timedelta | None = None
) -> timedelta:
    """The ``$__interval`` Grafana would send: range / data points, rounded, at least ``min_interval``.

    >>> from datetime import UTC, datetime
    >>> day = TimeRange(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    >>> grafana_interval(day)
    datetime.timedelta(seconds=60)
    >>> grafana_interval(day, min_interval=timedelta(hours=1))
    datetime.timedelta(seconds=3600)
    """
    raw_ms = (time_range.end - time_range.start) / timedelta(milliseconds=1) / max(max_data_points, 1)
    rounded = next((ms for bound, ms in _ROUND_INTERVALS if raw_ms < bound), 31536000000)
    interval = timedelta(milliseconds=rounded)
    return max(interval, min_interval) if min_interval else interval


def parse_duration(text: str) -> timedelta:
    """A Grafana interval string (``30s``, ``5m``, ``1h``, ``1d``, ``1w``) as a timedelta.

    >>> parse_duration("15m")
    datetime.timedelta(seconds=900)
    """
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    return timedelta(seconds=amount * scale)


def selections(values: Mapping[str, str | list[str]], options: Mapping[str, Sequence[str]]) -> list[Selection]:
    """Build selections from plain dicts: ``{"site": ALL}`` and each variable's options."""
    return [Selection(name, value, tuple(options.get(name, ()))) for name, value in values.items()]
