"""Read-only queries against the configured ClickHouse, directly or through a running writer.

With embedded ClickHouse (chdb) one process at a time opens a data directory; while a
writer holds it, reads go through the writer's ``/query`` endpoint (``sinks.http``).
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator

import orjson

from runtime.config import Settings


@contextlib.contextmanager
def read_only_queries(settings: Settings, fmt: str, via: str | None = None) -> Iterator[Callable[[str], bytes]]:
    """Yields a function that runs one read-only query and returns its output in ``fmt``.

    It queries ClickHouse directly, or through a writer's ``/query`` endpoint: the one at
    ``via``, or the local writer's when that writer holds embedded ClickHouse (chdb lets
    one process open its directory). Unqualified tables are those of
    ``settings.clickhouse_database``.
    """
    from sinks.client import ChdbBusyError, chdb_held_elsewhere, connect
    from sinks.readonly import READ_ONLY_SETTINGS

    if not via and chdb_held_elsewhere(settings.dsn):
        # Straight to the writer: opening chdb first would have ClickHouse print its own
        # "Code: 76 ... Cannot lock file" on stderr before the fallback below.
        via = f"http://127.0.0.1:{settings.writer_port}"
    if not via:
        try:
            client = connect(settings.dsn, settings.clickhouse_database)
        except ChdbBusyError:
            via = f"http://127.0.0.1:{settings.writer_port}"
        else:
            try:
                yield lambda sql: bytes(client.raw_query(sql, settings=READ_ONLY_SETTINGS, fmt=fmt))
            finally:
                client.close()
            return
    yield lambda sql: _query_via(via, sql, fmt)


def _query_via(base_url: str, statement: str, fmt: str) -> bytes:
    url = f"{base_url.rstrip('/')}/query?{urllib.parse.urlencode({'format': fmt})}"
    request = urllib.request.Request(url, data=statement.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = orjson.loads(detail)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
        raise RuntimeError(str(detail)) from None
    except OSError as error:
        raise RuntimeError(f"cannot reach the writer at {base_url} ({error})") from None
