"""Turn JSON row values into what clickhouse-connect inserts, column by column.

The output topic carries rows as JSON (DateTime64 as epoch milliseconds, Maps as
objects, Arrays as lists, Nullable as null). Each table column gets a converter
built from its ClickHouse type once; a converter takes the whole column (a list)
and returns the insertable list, or raises :class:`BadValue` naming the row.

Timestamps are handed to clickhouse-connect as integer ticks of the column's
precision (epoch ms for ``DateTime64(3)``): it writes integers as they are, which
skips building a ``datetime`` per value, and there is no timezone to get wrong.
Outside the type's range (``DateTime64``: 1900-01-01 to 2299-12-31, ``DateTime``:
1970 to 2106-02-07) a timestamp is refused: ClickHouse would store it anyway and
read back something else (epoch ms 2**62 comes back as 9999-12-31).

>>> to_ticks = converter_for("Nullable(DateTime64(3, 'UTC'))")
>>> to_ticks([1700000000123, None, "2023-11-14T22:13:20.123Z"])
[1700000000123, None, 1700000000123]
>>> converter_for("Map(String, Float64)")([{"lobby": 3}])
[{'lobby': 3.0}]
>>> converter_for("UInt32")([1, -1])
Traceback (most recent call last):
...
sinks.columns.BadValue: row 1: -1 is out of range for UInt32
>>> to_ticks([-2208988800001])
Traceback (most recent call last):
...
sinks.columns.BadValue: row 0: timestamp out of range for Nullable(DateTime64(3, 'UTC')) (1900-01-01 to 2299-12-31)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

Converter = Callable[[list[Any]], list[Any]]
ValueFn = Callable[[Any], Any]

_INT_RANGES = {
    f"{sign}Int{bits}": (0, 2**bits - 1) if sign == "U" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for sign in ("U", "")
    for bits in (8, 16, 32, 64)
}
# What the types can hold: (first second, end second exclusive, in words).
_DATETIME_RANGES = {
    "DateTime64": (-2_208_988_800, 10_413_792_000, "1900-01-01 to 2299-12-31"),
    "DateTime": (0, 2**32, "1970-01-01 to 2106-02-07"),  # UInt32 seconds
}


class BadValue(ValueError):
    """A value cannot go into its column; ``row`` is its index in the column."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(f"row {row}: {message}")
        self.row = row


@dataclass(frozen=True)
class ColumnType:
    """A parsed ClickHouse type: wrappers peeled off, the base and its arguments kept."""

    text: str
    base: str
    args: tuple[str, ...]
    nullable: bool

    @property
    def is_container(self) -> bool:
        return self.base in ("Array", "Map")


def parse_type(text: str) -> ColumnType:
    """Peel ``LowCardinality``/``Nullable`` and split the arguments of the base type.

    >>> parse_type("LowCardinality(Nullable(String))")
    ColumnType(text='LowCardinality(Nullable(String))', base='String', args=(), nullable=True)
    >>> parse_type("Map(String, UInt32)").args
    ('String', 'UInt32')
    """
    inner = text.strip()
    nullable = False
    while True:
        match = re.fullmatch(r"(LowCardinality|Nullable)\((.*)\)", inner, flags=re.S)
        if not match:
            break
        nullable = nullable or match.group(1) == "Nullable"
        inner = match.group(2).strip()
    name, _, rest = inner.partition("(")
    args = tuple(_split_args(rest[:-1])) if rest else ()
    return ColumnType(text=text, base=name.strip(), args=args, nullable=nullable)


def _split_args(text: str) -> list[str]:
    args, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return [a for a in args if a]


def default_for(column_type: ColumnType) -> tuple[bool, Any]:
    """(has_default, value) for a column missing from a row: only when "empty" is unambiguous.

    Nullable -> NULL, Array -> [], Map -> {}; anything else has no safe default (a
    missing ``version`` or timestamp must not silently become 0).
    """
    if column_type.nullable:
        return True, None
    if column_type.base == "Array":
        return True, []
    if column_type.base == "Map":
        return True, {}
    return False, None


def converter_for(type_text: str) -> Converter:
    """The column converter for a ClickHouse type (see the module doc)."""
    column_type = parse_type(type_text)
    value_fn = _value_fn(column_type)
    fast_ok = _fast_check(column_type)
    nullable = column_type.nullable

    def convert(values: list[Any]) -> list[Any]:
        # Fast path: values already of the right Python type (the common case for
        # well-formed rows) cost one pass of type checks, not a call per value.
        if fast_ok is not None and fast_ok(values):
            return values
        out: list[Any] = []
        for row, value in enumerate(values):
            if value is None:
                if not nullable:
                    raise BadValue(row, f"NULL in non-Nullable {type_text}")
                out.append(None)
                continue
            try:
                out.append(value_fn(value))
            except BadValue as error:
                raise BadValue(row, str(error).partition(": ")[2]) from None
            except (TypeError, ValueError, OverflowError) as error:
                raise BadValue(row, f"{_describe(value)} does not fit {type_text} ({error})") from None
        return out

    return convert


def _fast_check(column_type: ColumnType) -> Callable[[list[Any]], bool] | None:
    """A whole-column test that the values can be inserted as they are, if the type has one."""
    base, nullable = column_type.base, column_type.nullable
    if base in _INT_RANGES or (base == "DateTime64" and column_type.args[:1] in ((), ("3",))):
        # Epoch-ms ints are exactly the ticks of DateTime64(3).
        low, high = _INT_RANGES.get(base) or _tick_range(column_type, 1000)

        def ints(values: list[Any]) -> bool:
            present = [v for v in values if v is not None] if nullable else values
            if not all(type(v) is int for v in present):
                return False
            return not present or (low <= min(present) and max(present) <= high)

        return ints
    if base == "Map":
        key_ok, value_ok = _item_check(parse_type(column_type.args[0])), _item_check(parse_type(column_type.args[1]))
        if key_ok is None or value_ok is None:
            return None
        return lambda values: all(
            type(m) is dict and all(map(key_ok, m)) and all(map(value_ok, m.values())) for m in values
        )
    if base == "Array":
        item_ok = _item_check(parse_type(column_type.args[0]))
        if item_ok is None:
            return None
        return lambda values: all(type(a) is list and all(map(item_ok, a)) for a in values)
    fast_type = _PLAIN_TYPES.get(base)
    if fast_type is None:
        return None
    return lambda values: all(type(v) is fast_type or (nullable and v is None) for v in values)


def _item_check(column_type: ColumnType) -> Callable[[Any], bool] | None:
    """A per-item test for Map keys/values and Array items (None: always convert)."""
    if column_type.nullable:
        return None
    if column_type.base in _INT_RANGES:
        low, high = _INT_RANGES[column_type.base]
        return lambda x: type(x) is int and low <= x <= high
    plain = _PLAIN_TYPES.get(column_type.base)
    return None if plain is None else (lambda x: type(x) is plain)


# Python types inserted as they are (ints have their own path: range checks).
_PLAIN_TYPES: dict[str, type] = {"Float64": float, "Float32": float, "String": str}


def _describe(value: Any) -> str:
    # Never the value itself: rows can carry PHI-adjacent data and reasons get logged.
    return f"a {type(value).__name__}"


def _value_fn(column_type: ColumnType) -> ValueFn:
    base, args = column_type.base, column_type.args
    if base in _INT_RANGES:
        return _int_fn(base)
    if base in ("Float32", "Float64"):
        return _to_float
    if base == "Bool":
        return lambda v: bool(_int_fn("UInt8")(v))
    if base in ("String", "FixedString"):
        return _to_str
    if base in ("DateTime64", "DateTime"):
        return _ticks_fn(column_type)
    if base == "Array":
        inner = _nullable_aware(parse_type(args[0]))
        return lambda v: [inner(x) for x in _require(v, list, "a list")]
    if base == "Map":
        key_fn, val_fn = _nullable_aware(parse_type(args[0])), _nullable_aware(parse_type(args[1]))
        return lambda v: {key_fn(k): val_fn(x) for k, x in _require(v, dict, "an object").items()}
    return lambda v: v  # other types: trust clickhouse-connect


def _nullable_aware(column_type: ColumnType) -> ValueFn:
    fn = _value_fn(column_type)
    if not column_type.nullable:
        return fn
    return lambda v: None if v is None else fn(v)


def _require(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"expected {what}")
    return value


def _int_fn(base: str) -> ValueFn:
    low, high = _INT_RANGES[base]

    def to_int(value: Any) -> int:
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise TypeError("expected an integer")
        if not low <= number <= high:
            raise BadValue(0, f"{number} is out of range for {base}")
        return number

    return to_int


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return float(value)


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        # JSON-in-a-String columns (events.fields): serialise deterministically.
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError("expected a string")


def _ticks_per_second(column_type: ColumnType) -> int:
    if column_type.base == "DateTime":
        return 1
    return 10 ** int(column_type.args[0]) if column_type.args else 1000


def _tick_range(column_type: ColumnType, ticks_per_second: int) -> tuple[int, int]:
    """(lowest, highest) ticks the DateTime/DateTime64 column holds, inclusive."""
    first, end, _ = _DATETIME_RANGES[column_type.base]
    return first * ticks_per_second, end * ticks_per_second - 1


def _ticks_fn(column_type: ColumnType) -> ValueFn:
    """Epoch milliseconds / datetime / ISO text -> integer ticks of the column's precision."""
    ticks_per_second = _ticks_per_second(column_type)
    low, high = _tick_range(column_type, ticks_per_second)
    refusal = f"timestamp out of range for {column_type.text} ({_DATETIME_RANGES[column_type.base][2]})"

    def to_ticks(value: Any) -> int:
        ticks = ticks_of(value)
        if not low <= ticks <= high:
            raise BadValue(0, refusal)
        return ticks

    def ticks_of(value: Any) -> int:
        if isinstance(value, bool):
            raise TypeError("expected epoch milliseconds")
        if isinstance(value, int):
            return value * ticks_per_second // 1000
        if isinstance(value, float):
            return round(value * ticks_per_second / 1000)
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise TypeError("naive datetime (no timezone)")
            delta = value - datetime(1970, 1, 1, tzinfo=UTC)
            micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
            return micros * ticks_per_second // 1_000_000
        raise TypeError("expected epoch milliseconds")

    return to_ticks
