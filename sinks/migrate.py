"""Versioned schema migrations: ``sinks/migrations/NNNN_name.sql``, applied once, in order.

Each file is a list of ``;``-separated statements with ``{db}`` standing for the
database name. What has been applied is recorded in ``{db}.schema_migrations``
(version, name, checksum, applied_at), so running ``migrate`` again applies only
new files. Two processes migrating at the same moment (N writers starting together)
take turns: before applying migration N a process creates the table
``schema_migration_lock_N`` (plain ``CREATE TABLE``, which only one can win); the
others wait until N is recorded. A process killed mid-migration leaves the lock
behind, and the next one says which table to drop after checking the migration.
The statements are also written to be re-runnable where they can be (``IF NOT EXISTS``).

>>> import tempfile
>>> from sinks.client import connect
>>> from runtime.logs import configure_logging
>>> configure_logging("console", "WARNING")
>>> client = connect(f"chdb://{tempfile.mkdtemp()}/ch")
>>> [m.version for m in migrate(client, "doctest_db")]
[1, 2, 3, 4, 5, 6, 7]
>>> migrate(client, "doctest_db")   # already up to date
[]
>>> client.close()
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from runtime.logs import get_logger

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

log = get_logger("sinks.migrate")


class MigrationError(RuntimeError):
    """A migration file is malformed or one of its statements failed (the message names it)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        return split_statements(self.sql.replace("{db}", quote_database(database)))


def quote_database(database: str) -> str:
    """The database name as used in SQL; only plain identifiers are accepted.

    Migrations and queries interpolate it into SQL text, so anything else is refused
    rather than quoted.
    """
    if not _DB_NAME_RE.match(database):
        raise MigrationError(f"database name must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*), got {database!r}")
    return database


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files of ``directory``, sorted by version; duplicate versions are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is also {found[version].path.name}")
        found[version] = Migration(version, match.group(2), path, path.read_text())
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split SQL text on top-level ``;``, ignoring those inside quotes and comments.

    >>> split_statements("SELECT ';' -- a; comment\\n; /* x; */ SELECT 2;")
    ["SELECT ';' -- a; comment", '/* x; */ SELECT 2']
    """
    statements: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i += 1
            while i < n and sql[i] != ch:
                i += 2 if sql[i] == "\\" else 1  # backslash escapes; '' doubling works as two strings
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == ";":
            statements.append(sql[start:i])
            i += 1
            start = i
        else:
            i += 1
    statements.append(sql[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)
    return bool(without_comments.strip())


def applied_versions(client: Client, database: str) -> dict[int, str]:
    """Version -> checksum of the migrations already recorded in ``{db}.schema_migrations``."""
    db = quote_database(database)
    rows = client.query(
        f"SELECT version, argMax(checksum, applied_at) FROM {db}.schema_migrations GROUP BY version"
    ).result_rows
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(
    client: Client, database: str, directory: Path = MIGRATIONS_DIR, database_engine: str = "",
    lock_timeout_s: float = 300.0,
) -> list[Migration]:
    """Create ``database`` if needed and apply every migration not yet recorded; returns those applied.

    ``database_engine`` is the engine of a database created here, e.g.
    ``Replicated('/clickhouse/databases/journeys', '{shard}', '{replica}')`` on a replicated
    cluster: its MergeTree tables then replicate through Keeper without ``ON CLUSTER``.
    """
    db = quote_database(database)
    engine = f" ENGINE = {database_engine}" if database_engine else ""
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}{engine}")
    client.command(
        f"""CREATE TABLE IF NOT EXISTS {db}.schema_migrations
        (
            version    UInt32,
            name       String,
            checksum   String,
            applied_at DateTime64(3, 'UTC')
        )
        ENGINE = ReplacingMergeTree(applied_at)
        ORDER BY version"""
    )
    done = applied_versions(client, database)
    applied: list[Migration] = []
    for migration in discover(directory):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                # Applied files are history: a change there is not re-applied, say so loudly.
                log.warning("migration_changed_after_apply", version=migration.version, file=migration.path.name)
            continue
        if not _take_lock(client, database, migration, lock_timeout_s):
            continue  # another process applied it meanwhile
        for number, statement in enumerate(migration.statements(database), start=1):
            try:
                client.command(statement)
            except Exception as error:
                raise MigrationError(f"{migration.path.name}, statement {number}: {error}") from error
        client.insert(
            f"{db}.schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        log.info("migration_applied", version=migration.version, name=migration.name, database=database)
        applied.append(migration)
    return applied


def _take_lock(client: Client, database: str, migration: Migration, timeout_s: float) -> bool:
    """Become the one process applying ``migration``: True once the lock is ours, False
    when another process applied it while we waited."""
    db = quote_database(database)
    lock = f"schema_migration_lock_{migration.version}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.command(f"CREATE TABLE {db}.{lock} (holder String) ENGINE = Memory")
            return True
        except Exception as error:
            if "already exists" not in str(error).lower() and "TABLE_ALREADY_EXISTS" not in str(error):
                raise
        if migration.version in applied_versions(client, database):
            return False
        if time.monotonic() > deadline:
            raise MigrationError(
                f"{migration.path.name}: another process holds {database}.{lock} for more than {timeout_s:g} s; "
                f"if none is migrating, check the migration's statements and DROP TABLE {database}.{lock}")
        time.sleep(0.5)
