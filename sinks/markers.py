"""End-of-input markers, the ClickHouse end: how many acknowledgements of a marker are in.

A stream worker, at the end of an input, sends one ``pipeline_markers`` row to every
output partition after everything before it; the sink inserts a partition's marker
only after all earlier rows of that partition. So once all the marker rows a sender
expects are visible, all data sent before them is readable. The protocol as a whole
(sending, acknowledging, waiting) is :mod:`streams.markers`; this module only counts,
and a redelivered marker row replaces itself, so it is never counted twice.

>>> marker_count_sql("journeys", "marker-0a1b")
"SELECT count() FROM journeys.pipeline_markers FINAL WHERE marker_id = 'marker-0a1b'"
>>> marker_count_sql("journeys", "x' OR 1=1")
Traceback (most recent call last):
...
ValueError: not a marker id: "x' OR 1=1"
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client

from sinks.migrate import quote_database

_MARKER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def marker_count_sql(database: str, marker_id: str) -> str:
    """The statement counting a marker's rows, literal so that it also runs through the
    writer's read-only ``/query`` (which takes no parameters): the id is checked first."""
    if not _MARKER_ID.fullmatch(marker_id):
        raise ValueError(f"not a marker id: {marker_id!r}")
    return f"SELECT count() FROM {quote_database(database)}.pipeline_markers FINAL WHERE marker_id = '{marker_id}'"


def marker_rows(client: Client, database: str, marker_id: str) -> int:
    """Distinct marker rows of ``marker_id`` in ClickHouse now (0 when the table is missing)."""
    try:
        return int(str(client.command(marker_count_sql(database, marker_id))))
    except Exception as error:
        if "UNKNOWN_TABLE" in str(error) or "UNKNOWN_DATABASE" in str(error):
            return 0
        raise
