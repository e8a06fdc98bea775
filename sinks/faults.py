"""Why a write failed: ClickHouse is down (retry) or this data cannot be written (set it aside).

The writer must never lose a row and never stall on one. Those pull in opposite
directions only when a failure is misread: retrying a batch the engine refuses for its
data stalls its partitions for good; setting rows aside because the server was
briefly overloaded fills ``rejected_rows`` with good data. :func:`classify` draws the
line:

- **data**: the error is a verdict on the values sent. ClickHouse codes that say so
  (:data:`DATA_ERRORS`: parse and conversion errors, type mismatches, out-of-range
  values, column count mismatches, violated constraints; also any ``CANNOT_PARSE_*``
  name), clickhouse-connect's client-side serialization errors (``DataError``,
  ``ProgrammingError`` without a server code), and any other Python exception raised
  while writing rows (a ``TypeError`` in serialization, a bug of ours): retrying the
  same rows gives the same error.
- **transient**: everything else that comes from ClickHouse or the network:
  connection refused, timeouts, HTTP 5xx without a ClickHouse code, a busy chdb
  directory, and every other ClickHouse code (``TOO_MANY_PARTS``,
  ``MEMORY_LIMIT_EXCEEDED``, ``TIMEOUT_EXCEEDED``, ``TOO_MANY_SIMULTANEOUS_QUERIES``,
  ``READONLY``, ``KEEPER_EXCEPTION``, ``UNKNOWN_TABLE`` (migrations run again on
  reconnect), codes newer than this list...). A code not known to be about the data
  is retried: the worst case is a visible stall (``/readyz`` 503, backoff), never rows
  moved aside without cause.

>>> from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
>>> classify(DatabaseError("Code: 53. TYPE_MISMATCH", code=53, name="TYPE_MISMATCH")).value
'data'
>>> classify(DatabaseError("Code: 252. Too many parts", code=252)).value
'transient'
>>> classify(OperationalError("Error executing HTTP request")).value
'transient'
>>> classify(ConnectionRefusedError(111, "Connection refused")).value
'transient'
>>> classify(TypeError("unsupported operand")).value
'data'
>>> def insert(items):  # refuses any part with an odd number in it
...     if any(item % 2 for item in items):
...         raise ValueError("odd")
>>> [(item, str(error)) for item, error in isolate([1, 2, 4, 5, 6, 8], insert)]
[(1, 'odd'), (5, 'odd')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import TypeVar

from clickhouse_connect.driver.exceptions import DataError, ProgrammingError
from clickhouse_connect.driver.exceptions import Error as ClickHouseClientError

from sinks.client import ChdbBusyError

T = TypeVar("T")

# ClickHouse error codes that are a verdict on the data sent (name -> code: servers and
# chdb always give the code, the name only when error details are shown).
DATA_ERRORS: dict[str, int] = {
    "CANNOT_PARSE_TEXT": 6,
    "INCORRECT_NUMBER_OF_COLUMNS": 7,
    "THERE_IS_NO_COLUMN": 8,
    "SIZES_OF_COLUMNS_DOESNT_MATCH": 9,
    "NOT_FOUND_COLUMN_IN_BLOCK": 10,
    "NO_SUCH_COLUMN_IN_TABLE": 16,
    "NUMBER_OF_COLUMNS_DOESNT_MATCH": 20,
    "CANNOT_PARSE_ESCAPE_SEQUENCE": 25,
    "CANNOT_PARSE_QUOTED_STRING": 26,
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED": 27,
    "CANNOT_PARSE_DATE": 38,
    "CANNOT_PARSE_DATETIME": 41,
    "ILLEGAL_TYPE_OF_ARGUMENT": 43,
    "ILLEGAL_COLUMN": 44,
    "TYPE_MISMATCH": 53,
    "ARGUMENT_OUT_OF_BOUND": 69,
    "CANNOT_CONVERT_TYPE": 70,
    "CANNOT_PARSE_NUMBER": 72,
    "INCORRECT_DATA": 117,
    "TOO_LARGE_ARRAY_SIZE": 128,
    "CANNOT_READ_ARRAY_FROM_TEXT": 130,
    "TOO_LARGE_STRING_SIZE": 131,
    "SIZES_OF_ARRAYS_DONT_MATCH": 190,
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE": 321,
    "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN": 349,
    "CANNOT_PARSE_UUID": 376,
    "DECIMAL_OVERFLOW": 407,
    "CANNOT_PARSE_BOOL": 467,
    "VIOLATED_CONSTRAINT": 469,
    "CANNOT_READ_MAP_FROM_TEXT": 563,
}
_DATA_CODES = frozenset(DATA_ERRORS.values())


class Fault(Enum):
    TRANSIENT = "transient"  # ClickHouse is down or overloaded: back off, retry the same batch
    DATA = "data"  # these rows cannot be written: find them, set them aside, write the rest


def classify(error: BaseException) -> Fault:
    """Transient or data (see the module doc for the rules and why)."""
    if isinstance(error, ClickHouseClientError):
        name = error.name or ""
        if error.code in _DATA_CODES or name in DATA_ERRORS or name.startswith("CANNOT_PARSE_"):
            return Fault.DATA
        if error.code is None and isinstance(error, (DataError, ProgrammingError)):
            return Fault.DATA  # raised by the client itself while serializing what we gave it
        return Fault.TRANSIENT
    if isinstance(error, (OSError, ChdbBusyError)):  # OSError: sockets, refused connections, timeouts
        return Fault.TRANSIENT
    return Fault.DATA


def summary(error: BaseException) -> str:
    """A value-free name for the error, for logs and metrics (engine messages can quote values).

    >>> from clickhouse_connect.driver.exceptions import DatabaseError
    >>> summary(DatabaseError("... value [-18000] ...", code=130, name="CANNOT_READ_ARRAY_FROM_TEXT"))
    'CANNOT_READ_ARRAY_FROM_TEXT (130)'
    >>> summary(KeyError("x"))
    'KeyError'
    """
    if isinstance(error, ClickHouseClientError) and error.code is not None:
        return f"{error.name or 'code'} ({error.code})"
    return type(error).__name__


def describe(error: BaseException, limit: int = 4096) -> str:
    """The whole error text, bounded, for ``rejected_rows.reason`` (not for logs: see :func:`summary`)."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit] + "..."


def isolate(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], object],
    on_refused: Callable[[T, BaseException], None] | None = None,
) -> list[tuple[T, BaseException]]:
    """Do ``attempt(items)``; if it is refused for its data, do it for every item but the
    refused ones, and return those (with their errors; ``[]`` when all went through).

    After a data error the halves are tried,
    the left one first, and a failing half is split again: one bad item among n costs
    about 2·log2(n) attempts, k bad items about 2·k·log2(n/k). Left first matters: by the
    time an item is attempted, every item before it was either done or refused (and
    ``on_refused`` was told), which is what keeps markers after their partition's rows.
    A transient error is raised at once: the caller retries the whole batch later (every
    attempt is idempotent, so the parts already done do no harm).
    """
    refused: list[tuple[T, BaseException]] = []

    def attempt_or_split(part: Sequence[T]) -> None:
        try:
            attempt(part)
        except Exception as error:
            if classify(error) is Fault.TRANSIENT:
                raise
            if len(part) > 1:
                middle = len(part) // 2
                attempt_or_split(part[:middle])
                attempt_or_split(part[middle:])
                return
            refused.append((part[0], error))
            if on_refused is not None:
                on_refused(part[0], error)

    if items:
        attempt_or_split(items)
    return refused
