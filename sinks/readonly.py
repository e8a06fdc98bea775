"""Read-only SQL: the statements ``journeys query`` and the writer's ``/query`` will run.

Only one statement, starting with SELECT, SHOW, DESCRIBE/DESC, EXPLAIN or WITH, is
accepted; it also runs with the ``readonly = 1`` setting, so the server refuses
writes even if something slipped through this first check.

>>> check_read_only("  -- latest journeys\\n select * from appointment_journeys final;")
'-- latest journeys\\n select * from appointment_journeys final'
>>> check_read_only("DROP TABLE events")
Traceback (most recent call last):
...
sinks.readonly.ReadOnlyError: only SELECT, SHOW, DESCRIBE, EXPLAIN or WITH statements are allowed (got DROP)
"""

from __future__ import annotations

import re

from sinks.migrate import split_statements

ALLOWED = ("SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH")
READ_ONLY_SETTINGS = {"readonly": 1}


class ReadOnlyError(ValueError):
    """The SQL is not a single read-only statement."""


def check_read_only(sql: str) -> str:
    """The single statement of ``sql`` (trailing ``;`` removed) if it is read-only, else raise."""
    statements = split_statements(sql)
    if len(statements) != 1:
        raise ReadOnlyError(f"expected exactly one statement, got {len(statements)}")
    statement = statements[0]
    code = re.sub(r"--[^\n]*|/\*.*?\*/", " ", statement, flags=re.S).lstrip(" \t\r\n(")
    keyword = re.match(r"[A-Za-z]+", code)
    first = keyword.group(0).upper() if keyword else code[:12]
    if first not in ALLOWED:
        raise ReadOnlyError(
            f"only SELECT, SHOW, DESCRIBE, EXPLAIN or WITH statements are allowed (got {first or 'nothing'})"
        )
    return statement
