"""The Postgres and Redis a run uses: from URLs or embedded, with a fresh database and namespace.

A run never touches anything it did not create: it works in its own database (created and
dropped here when the role may) and under its own Redis key prefix, which it deletes at
the end, including the ARQ job keys its queues point at.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
import structlog
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from bench.config import BenchConfig
from tidings.core.db.migrate import migrate_url
from tidings.core.embedded import start_embedded
from tidings.core.settings import Settings

ENV_DATABASE_URL = "TIDINGS_BENCH_DATABASE_URL"
ENV_REDIS_URL = "TIDINGS_BENCH_REDIS_URL"
TOKEN_KEY_PREFIXES = (job_key_prefix, in_progress_key_prefix, retry_key_prefix)

log = structlog.get_logger("tidings.bench")


@dataclass(frozen=True)
class Backing:
    """Where a run's processes connect, and what it may assume about those servers."""

    database_url: str
    redis_url: str
    namespace: str
    #: An embedded Redis only this run uses: server-wide counters are the run's own.
    private_redis: bool
    #: False when the role could not create a database and the given one is shared.
    fresh_database: bool

    @property
    def database(self) -> str:
        """The name of the run's database."""
        return urlsplit(self.database_url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def with_application_name(url: str, name: str) -> str:
    """`url` whose connections report `name` (asyncpg passes it on as a server setting)."""
    parts = urlsplit(url)
    query = f"{parts.query}&application_name={name}" if parts.query else f"application_name={name}"
    return urlunsplit(parts._replace(query=query))


@asynccontextmanager
async def open_backing(config: BenchConfig, environ: Mapping[str, str]) -> AsyncIterator[Backing]:
    """Postgres and Redis for one run, cleaned up afterwards."""
    given = Settings(
        database_url=environ.get(ENV_DATABASE_URL, ""),
        redis_url=environ.get(ENV_REDIS_URL, ""),
        data_dir=config.data_dir,
    )
    settings, embedded = start_embedded(given)
    run_id = uuid.uuid4().hex[:10]
    namespace = f"bench-{run_id}"
    try:
        database = f"tidings_bench_{run_id}"
        fresh = await create_database(settings.database_url, database)
        url = with_database(settings.database_url, database) if fresh else settings.database_url
        await migrate_url(url)
        try:
            yield Backing(
                database_url=url,
                redis_url=settings.redis_url,
                namespace=namespace,
                private_redis=not given.redis_url,
                fresh_database=fresh,
            )
        finally:
            await forget_namespace(settings.redis_url, namespace)
            if fresh:
                await drop_database(settings.database_url, database)
    finally:
        embedded.close()


async def create_database(admin_url: str, name: str) -> bool:
    """Create database `name`; False when the role may not, and the given one is used."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        log.warning("bench.shared_database", reason="cannot create a database; using the given one")
        return False
    finally:
        await conn.close()
    return True


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def forget_namespace(redis_url: str, namespace: str) -> None:
    """Delete the run's keys: its queues, the ARQ jobs they hold, and raw ARQ's keys."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            if await client.type(key) == b"zset":
                members = await client.zrange(key, 0, -1)
                for start in range(0, len(members), 500):
                    chunk = members[start : start + 500]
                    await client.delete(
                        *(prefix.encode() + m for prefix in TOKEN_KEY_PREFIXES for m in chunk)
                    )
            await client.delete(key)
        async for key in client.scan_iter(match=f"arq:*{namespace}*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()
