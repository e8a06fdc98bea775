"""``journeys writer``, ``journeys db migrate`` and ``journeys query``.

    journeys db migrate                      # create/upgrade the tables
    journeys writer                          # output topic -> ClickHouse, until SIGTERM/Ctrl-C
    journeys query "SELECT status, count() FROM appointment_journeys FINAL GROUP BY status"
    journeys query --format csv "SELECT * FROM site_hourly FINAL" > site_hourly.csv

Connection settings come from ``JOURNEYS_*`` (``JOURNEYS_CLICKHOUSE_DSN``,
``JOURNEYS_CLICKHOUSE_DATABASE``, ...), overridable with ``--dsn``/``--database``.
With chdb only one process can open the data directory: while a writer runs,
``journeys query`` reads through the writer's ``/query`` endpoint (found on
``JOURNEYS_WRITER_PORT``, or given with ``--via http://host:port``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import orjson

from runtime.config import Settings, load_settings
from sinks.queries import read_only_queries

JSON_FORMATS = {"table": "JSONCompact", "csv": "CSVWithNames", "json": "JSONEachRow", "tsv": "TSVWithNames"}


def register(subparsers: Any) -> None:
    writer = subparsers.add_parser("writer", help="consume the output topic and write ClickHouse (until SIGTERM)")
    _connection_args(writer)
    writer.add_argument("--bootstrap", help="Kafka bootstrap servers (default: JOURNEYS_BOOTSTRAP)")
    writer.add_argument("--topic", help="output topic (default: JOURNEYS_TOPIC_OUTPUT)")
    writer.add_argument("--group", help="consumer group (default: <JOURNEYS_CONSUMER_GROUP>-clickhouse-writer)")
    writer.add_argument("--port", type=int, help="HTTP port for /healthz /readyz /metrics /query (0: none)")
    writer.set_defaults(run=run_writer)

    db = subparsers.add_parser("db", help="ClickHouse schema commands")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    migrate = db_commands.add_parser("migrate", help="create the database and apply new migrations")
    _connection_args(migrate)
    migrate.set_defaults(run=run_migrate)

    query = subparsers.add_parser("query", help="run one read-only SQL statement and print the result")
    query.add_argument("sql", help="SELECT / SHOW / DESCRIBE / EXPLAIN / WITH statement")
    query.add_argument(
        "--format", choices=sorted(JSON_FORMATS), default="table", help="output format (json: one object per line)"
    )
    query.add_argument("--via", help="read through a running writer's HTTP endpoint, e.g. http://127.0.0.1:6067")
    _connection_args(query)
    query.set_defaults(run=run_query)


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn", help="chdb:///path or http(s)://user:pass@host:port (default: JOURNEYS_CLICKHOUSE_DSN)"
    )
    parser.add_argument("--database", help="database name (default: JOURNEYS_CLICKHOUSE_DATABASE)")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        clickhouse_dsn=getattr(args, "dsn", None), clickhouse_database=getattr(args, "database", None), **extra
    )


# -- journeys writer ------------------------------------------------------------------------


def run_writer(args: argparse.Namespace) -> int:
    from runtime.logs import configure_logging
    from sinks.writer import SinkWriter, WriterConfig

    settings = _settings(args, bootstrap=args.bootstrap, topic_output=args.topic)
    configure_logging(settings.log_format, settings.log_level)
    overrides: dict[str, Any] = {}
    if args.group:
        overrides["group_id"] = args.group
    if args.port is not None:
        overrides["port"] = args.port or None
    writer = SinkWriter(WriterConfig.from_settings(settings, **overrides))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, writer.request_stop)
        await writer.run()

    asyncio.run(main())
    return 0


# -- journeys db migrate --------------------------------------------------------------------


def run_migrate(args: argparse.Namespace) -> int:
    from runtime.logs import configure_logging
    from sinks.client import connect, redact_dsn
    from sinks.migrate import migrate

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level)
    client = connect(settings.dsn)
    try:
        applied = migrate(client, settings.clickhouse_database, database_engine=settings.clickhouse_database_engine)
    finally:
        client.close()
    target = f"{redact_dsn(settings.dsn)} database {settings.clickhouse_database}"
    if applied:
        for migration in applied:
            print(f"applied {migration.path.name}")
    else:
        print(f"{target}: up to date")
    return 0


# -- journeys query -------------------------------------------------------------------------


def run_query(args: argparse.Namespace) -> int:
    from runtime.logs import configure_logging
    from sinks.readonly import ReadOnlyError, check_read_only

    try:
        statement = check_read_only(args.sql)
    except ReadOnlyError as error:
        print(f"journeys query: {error}", file=sys.stderr)
        return 2
    settings = _settings(args)
    configure_logging(settings.log_format, "WARNING")  # stdout is the result; logs go to stderr
    try:
        with read_only_queries(settings, JSON_FORMATS[args.format], via=args.via) as query:
            output = query(statement)
    except Exception as error:  # the command's answer to any failed query: its message, exit 1
        from cli.main import known_fault

        if known_fault(error) is not None:
            raise  # ClickHouse unreachable, chdb held, ...: one line and exit 2, from cli.main
        print(f"journeys query: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(render_table(output) if args.format == "table" else output.decode())
    return 0


def render_table(json_compact: bytes) -> str:
    """An aligned text table from ClickHouse ``JSONCompact`` output (numbers right-aligned).

    >>> print(render_table(b'{"meta": [{"name": "site", "type": "String"}, {"name": "n", "type": "UInt64"}],'
    ...                    b' "data": [["north", 12], ["south-east", null]]}'), end="")
    site       |    n
    -----------+-----
    north      |   12
    south-east | NULL
    (2 rows)
    """
    document = orjson.loads(json_compact)
    names = [column["name"] for column in document["meta"]]
    numeric = [_is_numeric(column["type"]) for column in document["meta"]]
    cells = [[_cell(value) for value in row] for row in document["data"]]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    header = [
        name.rjust(width) if is_number else name.ljust(width)
        for name, width, is_number in zip(names, widths, numeric, strict=True)
    ]
    lines = [" | ".join(header).rstrip()]
    lines.append("-+-".join("-" * width for width in widths))
    for row in cells:
        parts = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ]
        lines.append(" | ".join(parts).rstrip())
    count = len(cells)
    lines.append(f"({count} row{'s' if count != 1 else ''})")
    return "\n".join(lines) + "\n"


def _is_numeric(type_text: str) -> bool:
    inner = type_text.replace("Nullable(", "").replace("LowCardinality(", "")
    return inner.startswith(("Int", "UInt", "Float", "Decimal"))


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)
