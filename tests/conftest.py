"""Real Postgres and Redis for every test: the URLs in the environment, else embedded ones.

Each test module gets a fresh database cloned from a migrated template, and its own
Redis namespace, so modules never see each other's jobs, queues or events.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from arq.connections import ArqRedis

from tests.support.browser import browser, chromium  # noqa: F401 (fixtures)
from tests.support.paths import REPO_ROOT
from tests.support.servers import ServerHandle, WorkerHandle, start_server, start_worker
from tidings.core import queue
from tidings.core.db.migrate import migrate_url
from tidings.core.embedded import start_embedded
from tidings.core.settings import Settings
from tidings.worker.reporter import Reporter


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def backing() -> Iterator[Settings]:
    """Settings whose URLs reach the test Postgres (admin database) and Redis."""
    base = Settings(
        database_url=os.environ.get("TIDINGS_TEST_DATABASE_URL", ""),
        redis_url=os.environ.get("TIDINGS_TEST_REDIS_URL", ""),
        data_dir=Path(os.environ.get("TIDINGS_TEST_DATA_DIR", REPO_ROOT / ".data" / "test")),
        log_format="json",
        log_level="warning",
        auth="off",  # the access-control tests turn keys on for themselves
    )
    settings, servers = start_embedded(base)
    yield settings
    servers.close()


@pytest.fixture(scope="session")
def template_database(backing: Settings) -> Iterator[str]:
    """A migrated database that each test module's database is cloned from."""
    name = f"tidings_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(backing.database_url, f'CREATE DATABASE "{name}"'))
    asyncio.run(migrate_url(with_database(backing.database_url, name)))
    yield name
    asyncio.run(_admin(backing.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def settings(backing: Settings, template_database: str) -> Iterator[Settings]:
    """Settings for one test module: its own database and Redis namespace."""
    name = f"tidings_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(
        _admin(backing.database_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    )
    yield replace(
        backing,
        database_url=with_database(backing.database_url, name),
        namespace=f"t{uuid.uuid4().hex[:10]}",
        poll_delay_s=0.02,
        heartbeat_s=0.5,
        keepalive_s=1.0,
    )
    asyncio.run(_admin(backing.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from tidings.core.db.pool import create_pool

    pool = await create_pool(settings.database_url, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    """A Redis client of the test's own (modules that share one define their own)."""
    redis = await queue.connect(settings.redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
async def reporter(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> AsyncIterator[Reporter]:
    """The worker's event writer, running, as a test that plays the worker's part uses it."""
    reporter = Reporter(pool, redis, queue.Names(settings.namespace))
    reporter.start()
    yield reporter
    await reporter.close()


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[ServerHandle]:
    """The app served by uvicorn in this event loop, on a free port."""
    async with start_server(settings) as handle:
        yield handle


@pytest.fixture(scope="module")
async def worker(settings: Settings, server: ServerHandle) -> AsyncIterator[WorkerHandle]:
    """A worker running in this event loop, registered and ready."""
    async with start_worker(settings) as handle:
        yield handle
