"""End-of-input markers: know when everything sent before a marker is in ClickHouse.

A stream worker, at the end of an input, sends one ``pipeline_markers`` row to every
output partition after everything before it; the sink inserts a partition's marker
only after all earlier rows of that partition (and the ``site_hourly`` buckets they
touch). So once ``expected_rows`` marker rows of a ``marker_id`` are visible, all
data sent before them is readable:

>>> wait_for_marker(client, "journeys", "replay-42", expected_rows=4 * 4, timeout=60)  # doctest: +SKIP
16

``expected_rows`` is (stages x input partitions x output partitions) as the sender
defines it; a redelivered marker row replaces itself, so it is never counted twice.
"""

from __future__ import annotations

import asyncio
import time

from clickhouse_connect.driver.client import Client

from sinks.migrate import quote_database


def marker_rows(client: Client, database: str, marker_id: str) -> int:
    """Distinct marker rows of ``marker_id`` in ClickHouse now (0 when the table is missing)."""
    db = quote_database(database)
    try:
        result = client.query(
            f"SELECT count() FROM {db}.pipeline_markers FINAL WHERE marker_id = {{m:String}}",
            parameters={"m": marker_id},
        )
        return int(result.result_rows[0][0])
    except Exception as error:
        if "UNKNOWN_TABLE" in str(error) or "UNKNOWN_DATABASE" in str(error):
            return 0
        raise


def wait_for_marker(
    client: Client, database: str, marker_id: str, expected_rows: int, timeout: float, poll_s: float = 0.2
) -> int:
    """Block until ``expected_rows`` marker rows of ``marker_id`` are in; returns the count.

    Raises :class:`TimeoutError` (saying how many arrived) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = marker_rows(client, database, marker_id)
        if seen >= expected_rows:
            return seen
        if time.monotonic() >= deadline:
            raise TimeoutError(f"marker {marker_id!r}: {seen} of {expected_rows} rows after {timeout:g} s")
        time.sleep(poll_s)


async def wait_for_marker_async(
    client: Client, database: str, marker_id: str, expected_rows: int, timeout: float, poll_s: float = 0.2
) -> int:
    """:func:`wait_for_marker` for an event loop (each poll runs in a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await asyncio.to_thread(marker_rows, client, database, marker_id)
        if seen >= expected_rows:
            return seen
        if time.monotonic() >= deadline:
            raise TimeoutError(f"marker {marker_id!r}: {seen} of {expected_rows} rows after {timeout:g} s")
        await asyncio.sleep(poll_s)
