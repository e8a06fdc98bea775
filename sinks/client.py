"""Open a ClickHouse client from one DSN: an embedded chdb directory or a real server.

Two forms are accepted (the same client API comes back for both):

- ``chdb:///absolute/path`` (or ``chdb://relative/path``): the in-process chdb
  engine on that directory, created if missing. Only ONE process may hold a chdb
  directory at a time, and one process can hold only one chdb directory.
- ``http://user:password@host:8123/database`` or ``https://...:8443/...``: a
  ClickHouse server over HTTP(S). Query parameters (``?secure=true&connect_timeout=3``)
  are passed through to clickhouse-connect.

>>> import tempfile
>>> client = connect(f"chdb://{tempfile.mkdtemp()}/ch")
>>> client.query("SELECT 1 + 1").result_rows
[(2,)]
>>> client.close()
>>> parse_dsn("https://bob:s3cret@ch.example:8443/journeys").database
'journeys'
>>> parse_dsn("clickhouse://localhost:9000")
Traceback (most recent call last):
...
sinks.client.DsnError: unsupported ClickHouse DSN scheme 'clickhouse' (expected chdb:///path, http://... or https://...)
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

__all__ = [
    "ChdbBusyError", "Client", "DsnError", "ParsedDsn", "chdb_held_elsewhere", "connect", "is_chdb", "parse_dsn",
    "redact_dsn",
]


class DsnError(ValueError):
    """The DSN is not one this project can open; the message says what is expected."""


class ChdbBusyError(RuntimeError):
    """Another process holds the chdb directory (chdb allows one process per directory)."""


@dataclass(frozen=True)
class ParsedDsn:
    """The parts of a DSN that matter to us (password kept out of ``repr``)."""

    kind: Literal["chdb", "http"]
    path: Path | None = None
    scheme: str = "http"
    host: str = ""
    port: int | None = None
    username: str | None = None
    password: str = field(default="", repr=False)
    database: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def is_chdb(dsn: str) -> bool:
    """True when the DSN names an embedded chdb directory (one process at a time)."""
    return dsn.strip().lower().startswith("chdb:")


def parse_dsn(dsn: str) -> ParsedDsn:
    """Split a DSN into its parts, or raise :class:`DsnError` saying what is expected."""
    text = dsn.strip()
    scheme = text.partition(":")[0].lower()
    if scheme == "chdb":
        # chdb:///abs/path -> "/abs/path"; chdb://rel/path -> "rel/path"; chdb:path -> "path"
        raw = text[len("chdb:") :]
        raw = raw[2:] if raw.startswith("//") else raw
        raw = raw.split("?", 1)[0]
        if not raw or raw in (":memory:", "memory"):
            raise DsnError(f"chdb DSN needs a directory, e.g. chdb:///var/lib/journeys/clickhouse (got {dsn!r})")
        return ParsedDsn(kind="chdb", path=Path(unquote(raw)))
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        if not parts.hostname:
            raise DsnError(f"ClickHouse DSN has no host: {redact_dsn(dsn)!r}")
        try:
            port = parts.port
        except ValueError as error:
            raise DsnError(f"ClickHouse DSN has a bad port: {redact_dsn(dsn)!r}") from error
        database = unquote(parts.path.strip("/").split("/")[0]) or None
        return ParsedDsn(
            kind="http",
            scheme=scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else "",
            database=database,
            options=dict(parse_qsl(parts.query)),
        )
    raise DsnError(f"unsupported ClickHouse DSN scheme {scheme!r} (expected chdb:///path, http://... or https://...)")


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced, safe for logs and error messages.

    >>> redact_dsn("http://bob:s3cret@ch:8123/db")
    'http://bob:***@ch:8123/db'
    """
    parts = urlsplit(dsn.strip())
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


# chdb directories this process runs an engine in (chdb keeps it for the process's life).
_OPENED_HERE: set[Path] = set()


def connect(dsn: str, database: str | None = None) -> Client:
    """A clickhouse-connect client for ``dsn``; ``database`` (if given) becomes its default database.

    The database is NOT created here (``sinks.migrate.migrate`` does that); our own
    code always qualifies table names with the database, so a client without a
    default database works as well.
    """
    parsed = parse_dsn(dsn)
    if parsed.kind == "chdb":
        assert parsed.path is not None
        path = parsed.path.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        # chdb compares engine paths literally: always hand it the resolved path.
        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            _OPENED_HERE.add(path)
        except Exception as error:
            if _held_by_another_process(path):
                raise ChdbBusyError(
                    f"chdb directory {path} is in use by another process (a running `journeys writer`?): "
                    "only one process can open it; query through that process (its /query endpoint) or stop it"
                ) from error
            raise
        if database and _database_exists(client, database):
            client.database = database
        return client
    options: dict[str, str | int | bool] = dict(parsed.options)
    db = database or parsed.database
    client = clickhouse_connect.get_client(
        interface=parsed.scheme,
        host=parsed.host,
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=parsed.username or "default",
        password=parsed.password,
        **options,  # type: ignore[arg-type]
    )
    if db and _database_exists(client, db):
        client.database = db
    return client


def chdb_held_elsewhere(dsn: str) -> bool:
    """Whether another process runs chdb in ``dsn``'s directory (False for a server DSN,
    and for a directory this process opened: its own engine's lock looks the same)."""
    parsed = parse_dsn(dsn)
    if parsed.kind != "chdb" or parsed.path is None:
        return False
    path = parsed.path.expanduser().resolve()
    return path not in _OPENED_HERE and _held_by_another_process(path)


def _held_by_another_process(path: Path) -> bool:
    # ClickHouse holds an exclusive flock on <path>/status while an engine runs there.
    # Probe it only after a failed open: our own engine's lock would look the same.
    status = path / "status"
    if not status.exists():
        return False
    try:
        with status.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _database_exists(client: Client, database: str) -> bool:
    # Setting a missing database as the default makes every later query fail on a
    # server, so only adopt it once it exists (before migrations it may not).
    return bool(
        client.command("SELECT count() FROM system.databases WHERE name = {db:String}", parameters={"db": database})
    )
