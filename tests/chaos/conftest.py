"""Fixtures of the chaos suite: per-test Redis, database, settings and processes.

Every test gets a Redis of its own (it may flush, kill or restart it) and a fresh
database cloned from the migrated template in the test Postgres; the tests that stop
Postgres start their own with `PostgresServer`. The server and workers run as
real processes (`python -m server|worker`) whose log lines the tests wait on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.chaos.servers import PostgresServer, RedisServer
from tests.conftest import with_database
from tests.support.servers import LogWatch, Process, free_port
from tidings.core.settings import Settings

# The shorter periods every chaos test runs with, unless its scenario needs the default.
HEARTBEAT_S = 0.5
RECONCILE_S = 1.0
WAIT_S = 30.0


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, on a free TCP port."""
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A Postgres of this test's own, to stop and start."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
async def database_url(backing: Settings, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own in the test Postgres."""
    name = f"tidings_chaos_{uuid.uuid4().hex[:10]}"
    await _admin(backing.database_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield with_database(backing.database_url, name)
    await _admin(backing.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def chaos_settings(backing: Settings, database_url: str, redis_server: RedisServer) -> Settings:
    """Settings for this test's processes: its database, its Redis, a free port."""
    return replace(
        backing,
        database_url=database_url,
        redis_url=redis_server.url,
        namespace=f"c{uuid.uuid4().hex[:10]}",
        port=free_port(),
        log_format="json",
        log_level="info",
        poll_delay_s=0.02,
        heartbeat_s=HEARTBEAT_S,
        reconcile_s=RECONCILE_S,
        keepalive_s=1.0,
        concurrency=20,
    )


@pytest.fixture
async def db(chaos_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The test's own pool on its database, for checking what the processes wrote."""
    from tidings.core.db.pool import create_pool

    pool = await create_pool(chaos_settings.database_url, max_size=4)
    yield pool
    await pool.close()


async def register_tasks(pool: asyncpg.Pool, settings: Settings) -> None:
    """Register the tasks as a worker does at start, so jobs can be submitted before one runs."""
    from tidings.core.db import tasks as task_rows
    from tidings.worker.registry import TaskRegistry

    tasks = TaskRegistry.from_modules(settings.tasks)
    await task_rows.upsert_tasks(pool, [spec.registry_row() for spec in tasks])


def log_records(process: Process, event: str) -> list[dict[str, Any]]:
    """The JSON log records of `process` named `event`, in order."""
    records = []
    for line in process.lines:
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("event") == event:
            records.append(record)
    return records


@dataclass
class Cluster:
    """The server and worker processes of one test, started from its settings."""

    settings: Settings
    logs: LogWatch = field(default_factory=LogWatch)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    async def server(self, **overrides: Any) -> Process:
        """`python -m server`, once it accepts connections."""
        process = await self.logs.spawn("tidings.server", replace(self.settings, **overrides))
        # Not `server.ready`: that is logged at app startup, before uvicorn binds its port.
        await process.wait_for_line("Uvicorn running on")
        return process

    async def worker(self, **overrides: Any) -> Process:
        """`python -m worker`, once it is ready."""
        process = await self.logs.spawn("tidings.worker", replace(self.settings, **overrides))
        await process.wait_for_line("worker.ready")
        return process

    async def until(self, predicate: Callable[[], bool], within_s: float = WAIT_S) -> None:
        """Wait until `predicate` holds; it is checked after each log line of any process."""
        try:
            async with asyncio.timeout(within_s), self.logs.condition:
                await self.logs.condition.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"not within {within_s:g}s; logs:\n{self.summary()}") from None

    def summary(self) -> str:
        """How often each process logged each event, and its last lines: for failures."""
        parts = []
        for index, process in enumerate(self.logs.processes):
            names = Counter(
                json.loads(line).get("event") for line in process.lines if line.startswith("{")
            )
            tail = "\n    ".join(line[:300] for line in process.lines[-15:])
            parts.append(f"[{index}] exit={process.proc.returncode} {dict(names)}\n    {tail}")
        return "\n".join(parts)

    async def close(self) -> None:
        """Stop every process still running (and finish reading what each wrote)."""
        for process in self.logs.processes:
            await process.stop()


@pytest.fixture
async def cluster(chaos_settings: Settings) -> AsyncIterator[Cluster]:
    cluster = Cluster(chaos_settings)
    yield cluster
    await cluster.close()
