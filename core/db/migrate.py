"""Apply numbered SQL migrations, each once, each in its own transaction, under a lock.

The advisory lock serialises every process that starts at once (servers and workers all
call `migrate` on start), so each file is applied exactly once. It is taken per
transaction, never per session, so migrations run through a transaction pooler too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

from tidings.core.db import locks
from tidings.core.db.pool import connect

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations folder holds something the runner cannot apply safely."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Traversable

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def bundled() -> Traversable:
    """The migrations shipped in the package (`tidings.migrations`), wherever it is installed."""
    return files("tidings.migrations")


def discover(directory: Traversable | None = None) -> list[Migration]:
    """Every `NNNN_name.sql` file in `directory` (default: the bundled ones), in version
    order; duplicates are an error."""
    directory = bundled() if directory is None else directory
    if not directory.is_dir():
        raise MigrationError(f"{directory}: no migrations folder there")
    found: dict[int, Migration] = {}
    sql_files = (item for item in directory.iterdir() if item.name.endswith(".sql"))
    for path in sorted(sql_files, key=lambda item: item.name):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


async def migrate(
    conn: asyncpg.Connection, directory: Traversable | None = None
) -> list[Migration]:
    """Apply every migration not yet recorded; returns the ones this call applied.

    The lock is transaction-scoped, taken again by each migration's transaction, so the
    run holds no session state and works through a transaction pooler (PgBouncer): a
    session lock would stay with whichever server session the pooler ran it on.
    """
    pending = discover(directory)
    applied: list[Migration] = []
    done = await _applied_versions(conn)
    for migration in pending:
        if migration.version in done:
            continue
        async with conn.transaction():
            await locks.wait_transaction_lock(conn, locks.MIGRATIONS)
            # Another process may have applied it while this one waited for the lock.
            if migration.version in await _applied_versions_locked(conn):
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
        applied.append(migration)
    return applied


async def _applied_versions(conn: asyncpg.Connection) -> set[int]:
    """The versions recorded, the ledger created first if this database has none."""
    async with conn.transaction():
        await locks.wait_transaction_lock(conn, locks.MIGRATIONS)
        return await _applied_versions_locked(conn)


async def _applied_versions_locked(conn: asyncpg.Connection) -> set[int]:
    await conn.execute(CREATE_LEDGER)
    return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}


async def migrate_url(database_url: str, directory: Traversable | None = None) -> list[Migration]:
    """Connect to `database_url`, migrate, and disconnect."""
    conn = await connect(database_url)
    try:
        return await migrate(conn, directory)
    finally:
        await conn.close()
