"""``journeys loyalty``: does friction cost us patients? The loyalty findings, without Grafana.

::

    $ journeys loyalty                                  # all the data, every site
    $ journeys loyalty --from 2026-01-01 --to 2026-07-01 --site nyc-midtown
    $ journeys loyalty --json                           # one object per friction rule

For the completed visits in the range (by their scheduled start) at the site: per
friction rule, and for ``any_friction`` (any rule): decided visits with it and without
any friction, their lapse rates, the relative risk of not coming back (Mantel-Haenszel
over department x visit type) with its 95% interval, and the patients lost to it. The
same SQL as the loyalty dashboard (``dashboards/retention.py``; definitions in
``journey/METRICS.md``, "Retention"), on any contract-v1 data the pipeline wrote.
Reads ClickHouse directly, or through the writer while ``journeys up`` holds chdb.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

import orjson

JSON_FIELDS = (
    "rule", "exposed_visits", "unexposed_visits", "exposed_lapses", "unexposed_lapses",
    "lapse_rate_exposed", "lapse_rate_unexposed", "relative_risk", "ci_low", "ci_high",
    "patients_lost", "patients_lost_low", "patients_lost_high", "enough",
)


def _instant(text: str) -> dt.datetime:
    """A date (``2026-03-01``, midnight UTC) or an ISO 8601 instant (UTC if naive)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "loyalty",
        help="does friction cost us patients? lapse rates, relative risks with 95%% intervals, patients lost",
        description=__doc__.split("::")[0].strip(),
    )
    parser.add_argument("--from", dest="start", type=_instant, metavar="DATE",
                        help="first visit time measured (default: the earliest)")
    parser.add_argument("--to", dest="end", type=_instant, metavar="DATE",
                        help="visits before this time (default: no end)")
    parser.add_argument("--site", action="append", metavar="SITE_ID", help="only this site (repeatable)")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per friction rule")
    parser.add_argument("--via", help="read through a running writer's HTTP endpoint, e.g. http://127.0.0.1:6067")
    parser.add_argument("--dsn", help="chdb:///path or http(s)://... (default: JOURNEYS_CLICKHOUSE_DSN)")
    parser.add_argument("--database", help="database name (default: JOURNEYS_CLICKHOUSE_DATABASE)")
    parser.set_defaults(run=run)


def _sql_instant(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{utc}', 3, 'UTC')"


def _index(args: argparse.Namespace) -> str:
    """The SQL condition on the measured visits."""
    conditions = ["1"]
    if args.start is not None:
        conditions.append(f"visit_at >= {_sql_instant(args.start)}")
    if args.end is not None:
        conditions.append(f"visit_at < {_sql_instant(args.end)}")
    if args.site:
        quoted = ", ".join("'" + site.replace("\\", "\\\\").replace("'", "\\'") + "'" for site in args.site)
        conditions.append(f"site_id IN ({quoted})")
    return " AND ".join(conditions)


def _rows(query: Any, sql: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in query(sql).splitlines() if line.strip()]


def findings(rows: Callable[[str], list[dict[str, Any]]], index: str) -> tuple[list[dict[str, Any]], str]:
    """The findings per rule and the headline, ``rows`` running each query (``journeys loyalty``,
    the demo's summary)."""
    from dashboards.retention import findings_sql, headline_sql

    return rows(findings_sql(index)), rows(headline_sql(index))[0]["headline"]


def _number(value: Any, digits: int, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.{digits}f}%" if percent else f"{value:.{digits}f}"


def render(findings: list[dict[str, Any]], headline: str) -> str:
    """The findings as a text table, the headline first.

    >>> print(render([{"rule": "any_friction", "exposed_visits": 120, "unexposed_visits": 300,
    ...     "lapse_rate_exposed": 0.1, "lapse_rate_unexposed": 0.05, "relative_risk": 2.0, "ci_low": 1.2,
    ...     "ci_high": 3.3, "patients_lost": 6.0, "patients_lost_low": 2.0, "patients_lost_high": 8.4,
    ...     "enough": 1}], "Patients who ..."), end="")
    Patients who ...
    <BLANKLINE>
    friction rule | with it | without | lapsed with | lapsed without | relative risk | 95% interval | patients lost (95%)
    --------------+---------+---------+-------------+----------------+---------------+--------------+--------------------
    any_friction  |     120 |     300 |       10.0% |           5.0% |          2.00 |  1.20 - 3.30 |     6.0 (2.0 - 8.4)
    """
    if not findings:
        return headline + "\n"
    header = ("friction rule", "with it", "without", "lapsed with", "lapsed without", "relative risk",
              "95% interval", "patients lost (95%)")
    lines = []
    for row in findings:
        enough = bool(row["enough"])
        lines.append((
            row["rule"], str(row["exposed_visits"]), str(row["unexposed_visits"]),
            _number(row["lapse_rate_exposed"], 1, percent=True), _number(row["lapse_rate_unexposed"], 1, percent=True),
            _number(row["relative_risk"], 2) if enough else "-",
            f"{row['ci_low']:.2f} - {row['ci_high']:.2f}" if enough else "not enough history",
            f"{row['patients_lost']:.1f} ({max(row['patients_lost_low'], 0.0):.1f} - {row['patients_lost_high']:.1f})"
            if enough else "-",
        ))
    widths = [max([len(header[i]), *(len(line[i]) for line in lines)]) for i in range(len(header))]

    def joined(cells: tuple[str, ...]) -> str:
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    table = [joined(header), "-+-".join("-" * w for w in widths), *(joined(line) for line in lines)]
    return "\n".join([headline, "", *table]) + "\n"


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.logs import configure_logging
    from sinks.queries import read_only_queries

    settings = load_settings(clickhouse_dsn=args.dsn, clickhouse_database=args.database)
    configure_logging(settings.log_format, "WARNING")  # stdout is the result; logs go to stderr
    index = _index(args)
    try:
        with read_only_queries(settings, "JSONEachRow", via=args.via) as query:
            found, headline = findings(lambda sql: _rows(query, sql), index)
    except Exception as error:  # a failed query: its message, exit 1 (known faults: one line, exit 2)
        from cli.main import known_fault

        if known_fault(error) is not None:
            raise
        print(f"journeys loyalty: {error}", file=sys.stderr)
        return 1
    if args.json:
        for row in found:
            sys.stdout.write(orjson.dumps({name: row[name] for name in JSON_FIELDS}).decode() + "\n")
    else:
        sys.stdout.write(render(found, headline))
    return 0
