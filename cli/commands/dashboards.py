"""``journeys dashboards ...``: generate the JSON, push to Grafana, render the HTML report.

    journeys dashboards generate                       # rewrite dashboards/generated/*.json
    journeys dashboards push --grafana-url https://grafana.example [--folder NAME]
    journeys dashboards report --out report.html       # the same panels, from ClickHouse, offline
    journeys dashboards report --screenshots dashboards/screenshots   # + one PNG per dashboard

``push`` takes the Grafana token from ``GRAFANA_TOKEN`` (or ``GRAFANA_USER`` /
``GRAFANA_PASSWORD``) and the ClickHouse password for the datasource from
``CLICKHOUSE_GRAFANA_PASSWORD``: secrets never go on the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dashboards`` with its sub-commands ``generate``, ``push`` and ``report``."""
    parser = subparsers.add_parser(
        "dashboards", help="Grafana dashboards: generate JSON, push to Grafana, HTML report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="dashboards_command", required=True, metavar="SUBCOMMAND")

    generate = commands.add_parser("generate", help="regenerate dashboards/generated/<uid>.json from the code")
    generate.add_argument("--out", type=Path, default=None, help="output folder (default: dashboards/generated)")
    generate.set_defaults(run=run_generate)

    push = commands.add_parser("push", help="create or update the datasource, folder and dashboards in Grafana")
    push.add_argument("--grafana-url", required=True, help="e.g. http://localhost:3000")
    push.add_argument("--folder", default=None, help='folder title (default: "Patient journeys")')
    push.add_argument(
        "--no-datasource", action="store_true", help="leave the datasource alone (provisioned from a file)"
    )
    push.add_argument("--clickhouse-host", help="datasource host (default: $CLICKHOUSE_HOST or clickhouse-journeys)")
    push.add_argument("--clickhouse-port", type=int, help="8123 HTTP, 8443 HTTPS, 9000 native, 9440 native TLS")
    push.add_argument("--clickhouse-protocol", choices=["http", "native"], help="default: $CLICKHOUSE_PROTOCOL or http")
    push.add_argument("--clickhouse-secure", action="store_true", default=None, help="TLS to ClickHouse")
    push.add_argument("--clickhouse-user", help="read-only user (default: $CLICKHOUSE_GRAFANA_USER or grafana)")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
    push.set_defaults(run=run_push)

    report = commands.add_parser("report", help="render the dashboards' panels from ClickHouse into one HTML file")
    report.add_argument("--dsn", help="ClickHouse DSN (default: JOURNEYS_CLICKHOUSE_DSN or the local chdb directory)")
    report.add_argument("--database", help="database (default: JOURNEYS_CLICKHOUSE_DATABASE, journeys)")
    report.add_argument("--out", type=Path, default=Path("journeys-report.html"))
    report.add_argument("--from", dest="time_from", help="start, ISO 8601 (default: the first scheduled start)")
    report.add_argument("--to", dest="time_to", help="end, ISO 8601 (default: the latest event)")
    report.add_argument("--dashboard-ranges", action="store_true",
                        help="each dashboard at its own default range, now = --to")
    report.add_argument("--screenshots", type=Path, metavar="DIR",
                        help="also write DIR/<uid>.png per dashboard (needs chromium)")
    report.set_defaults(run=run_report)


def run_generate(args: argparse.Namespace) -> int:
    from dashboards.generate import GENERATED_DIR, generate

    for path in generate(args.out or GENERATED_DIR):
        print(path)
    return 0


def run_push(args: argparse.Namespace) -> int:
    from dashboards.generate import load_generated
    from dashboards.push import (
        DEFAULT_FOLDER,
        PushError,
        datasource_body,
        grafana_api,
        push,
    )

    env = dict(os.environ)
    overrides = {
        "CLICKHOUSE_HOST": args.clickhouse_host,
        "CLICKHOUSE_PORT": str(args.clickhouse_port) if args.clickhouse_port else None,
        "CLICKHOUSE_PROTOCOL": args.clickhouse_protocol,
        "CLICKHOUSE_SECURE": "true" if args.clickhouse_secure else None,
        "CLICKHOUSE_GRAFANA_USER": args.clickhouse_user,
    }
    env.update({key: value for key, value in overrides.items() if value})
    try:
        body = None if args.no_datasource else datasource_body(env)
        api = grafana_api(args.grafana_url, env, timeout=args.timeout)
        result = push(api, load_generated(), folder_title=args.folder or DEFAULT_FOLDER, datasource=body)
    except PushError as error:
        print(f"journeys dashboards push: {error}", file=sys.stderr)
        return 1
    for line in result.lines():
        print(line)
    return 0


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_report(args: argparse.Namespace) -> int:
    from dashboards.report import data_time_range, render_report
    from runtime.config import load_settings
    from sinks.client import connect

    settings = load_settings()
    database = args.database or settings.clickhouse_database
    client = connect(args.dsn or settings.dsn, database)
    try:
        start, end = data_time_range(client, database)
        start, end = _moment(args.time_from) or start, _moment(args.time_to) or end
        print(render_report(client, database, args.out, start, end, dashboard_ranges=args.dashboard_ranges,
                            time_zones=settings.site_time_zones))
        if args.screenshots:
            from dashboards.screenshots import capture

            for png in capture(client, database, start, end, args.screenshots, time_zones=settings.site_time_zones):
                print(png)
    finally:
        client.close()
    return 0
