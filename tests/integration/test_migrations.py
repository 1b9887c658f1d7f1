"""Every migration applied to an empty database, concurrently, once each, gives DESIGN's schema."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _admin, with_database
from tidings.core.db import locks
from tidings.core.db.migrate import Migration, discover, migrate, migrate_url
from tidings.core.settings import Settings

# The columns DESIGN.md's data model names for each table.
DESIGN_COLUMNS = {
    "jobs": {
        "id",
        "task",
        "args",
        "queue",
        "priority",
        "status",
        "attempt",
        "max_attempts",
        "timeout_s",
        "progress_current",
        "progress_total",
        "progress_message",
        "result",
        "error",
        "idempotency_key",
        "tenant",
        "seq",
        "worker_id",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
        "updated_at",
        "cancel_requested_at",
    },
    "job_events": {
        "job_id",
        "seq",
        "kind",
        "status",
        "attempt",
        "progress_current",
        "progress_total",
        "message",
        "data",
        "at",
    },
    "workers": {"id", "hostname", "pid", "queues", "concurrency", "started_at", "heartbeat_at"},
    "tasks": {"name", "queue", "args_schema", "defaults", "description", "updated_at"},
    "schema_migrations": {"version", "name", "applied_at"},
}

NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(scope="module")
async def new_database(backing: Settings) -> AsyncIterator[NewDatabase]:
    """Creates empty databases on demand; drops them all when the module ends."""
    names: list[str] = []

    async def create() -> str:
        name = f"tidings_mig_{uuid.uuid4().hex[:10]}"
        await _admin(backing.database_url, f'CREATE DATABASE "{name}"')
        names.append(name)
        return with_database(backing.database_url, name)

    yield create
    await _admin(
        backing.database_url, *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names)
    )


@pytest.fixture(scope="module")
async def concurrent_runs(
    backing: Settings, new_database: NewDatabase
) -> tuple[str, list[list[Migration]]]:
    """An empty database migrated by two runs at once; its URL and what each run applied."""
    url = await new_database()
    runs = await asyncio.gather(migrate_url(url), migrate_url(url))
    return url, list(runs)


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def fetchval(url: str, query: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def shipped(settings: Settings) -> list[tuple[int, str]]:
    return [(m.version, m.name) for m in discover()]


async def test_concurrent_runs_apply_each_migration_exactly_once(
    backing: Settings, concurrent_runs: tuple[str, list[list[Migration]]]
) -> None:
    _, runs = concurrent_runs
    # The lock is taken per migration (so it works behind a transaction pooler): the runs
    # may share the work, and each migration is applied by exactly one of them.
    applied = sorted((m.version, m.name) for run in runs for m in run)
    assert applied == shipped(backing)


async def test_each_version_is_recorded_once(
    backing: Settings, concurrent_runs: tuple[str, list[list[Migration]]]
) -> None:
    url, _ = concurrent_runs
    rows = await fetch(
        url,
        "SELECT version, name, count(*) OVER (PARTITION BY version) AS n FROM schema_migrations",
    )
    assert sorted((row["version"], row["name"]) for row in rows) == shipped(backing)
    assert {row["n"] for row in rows} == {1}


async def test_a_third_run_applies_nothing(
    backing: Settings, concurrent_runs: tuple[str, list[list[Migration]]]
) -> None:
    url, _ = concurrent_runs
    assert await migrate_url(url) == []
    assert await fetchval(url, "SELECT count(*) FROM schema_migrations") == len(shipped(backing))


async def test_tables_have_the_design_columns(
    concurrent_runs: tuple[str, list[list[Migration]]],
) -> None:
    url, _ = concurrent_runs
    rows = await fetch(
        url,
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = ANY($1::text[])
        """,
        list(DESIGN_COLUMNS),
    )
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    for table, expected in DESIGN_COLUMNS.items():
        assert expected <= columns.get(table, set()), (table, expected - columns.get(table, set()))


async def test_job_events_key_is_job_id_then_seq(
    concurrent_runs: tuple[str, list[list[Migration]]],
) -> None:
    url, _ = concurrent_runs
    rows = await fetch(
        url,
        """
        SELECT tc.table_name, kcu.column_name
        FROM information_schema.table_constraints tc
        JOIN information_schema.key_column_usage kcu
          ON kcu.constraint_schema = tc.constraint_schema
         AND kcu.constraint_name = tc.constraint_name
        WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'
        ORDER BY tc.table_name, kcu.ordinal_position
        """,
    )
    keys: dict[str, list[str]] = {}
    for row in rows:
        keys.setdefault(row["table_name"], []).append(row["column_name"])
    assert keys["job_events"] == ["job_id", "seq"]
    assert keys["jobs"] == ["id"]
    assert keys["workers"] == ["id"]
    assert keys["tasks"] == ["name"]
    assert keys["schema_migrations"] == ["version"]


async def test_a_failing_migration_rolls_back_alone_and_releases_the_lock(
    backing: Settings, new_database: NewDatabase, tmp_path: Path
) -> None:
    for migration in discover():
        shutil.copy(migration.path, tmp_path / migration.path.name)
    broken = tmp_path / "9999_broken.sql"
    broken.write_text("CREATE TABLE half_done (id int);\nSELECT 1 / 0;\n")
    url = await new_database()
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn, tmp_path)
        # The session that failed is still open, yet another one can take the lock.
        assert await fetchval(url, "SELECT pg_try_advisory_lock($1)", locks.MIGRATIONS) is True
    finally:
        await conn.close()
    versions = [row["version"] for row in await fetch(url, "SELECT version FROM schema_migrations")]
    assert sorted(versions) == [version for version, _ in shipped(backing)]
    assert await fetchval(url, "SELECT to_regclass('half_done')") is None

    broken.write_text("CREATE TABLE half_done (id int);\n")
    assert [m.version for m in await migrate_url(url, tmp_path)] == [9999]
