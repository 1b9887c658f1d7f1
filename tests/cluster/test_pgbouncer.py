"""tidings through PgBouncer in transaction pooling mode, with no setting that says so.

Behind a transaction pooler a client's statements run on whichever server session is
free: named prepared statements, session advisory locks and LISTEN do not survive that.
tidings finds the pooler on connect (`behind_pooler`), keeps no prepared statements
there, takes only transaction-scoped locks, and LISTENs on the direct URL alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from tests.chaos.conftest import Cluster, log_records
from tests.cluster.engines import PgBouncer, SentinelRedis
from tests.cluster.load import Servers, assert_each_ran_once, job_ids, until_all_finished
from tests.conftest import with_database
from tidings.core.db.migrate import discover, migrate_url
from tidings.core.db.pool import behind_pooler, connect, create_pool
from tidings.core.inprocess import Tidings
from tidings.core.settings import Settings

pytestmark = pytest.mark.cluster

# Fewer server sessions than clients, so statements of one client land on several sessions.
SERVER_SESSIONS = 3
CLIENTS = 20


@pytest.fixture
async def small_pgbouncer(tmp_path: Path, backing: Settings) -> AsyncIterator[PgBouncer]:
    bouncer = PgBouncer(tmp_path / "small", backing.database_url, pool_size=SERVER_SESSIONS)
    await bouncer.start()
    yield bouncer
    await bouncer.close()


@pytest.fixture
async def empty_database(backing: Settings) -> AsyncIterator[str]:
    name = f"tidings_empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(backing.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(backing.database_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_a_pooler_is_found_on_connect_and_a_direct_connection_is_not(
    small_pgbouncer: PgBouncer, direct_database_url: str
) -> None:
    for url, pooled in (
        (small_pgbouncer.url(direct_database_url), True),
        (direct_database_url, False),
    ):
        conn = await connect(url)
        try:
            assert await behind_pooler(conn) is pooled
        finally:
            await conn.close()


async def test_the_pool_runs_concurrent_statements_through_transaction_pooling(
    small_pgbouncer: PgBouncer, direct_database_url: str
) -> None:
    pool = await create_pool(
        small_pgbouncer.url(direct_database_url),
        min_size=CLIENTS,
        max_size=CLIENTS,
        idle_in_transaction_s=1.0,
    )
    try:

        async def client(index: int) -> list[int]:
            got = []
            for step in range(25):
                # Parameters, a json codec and a transaction: each once per round.
                got.append(await pool.fetchval("SELECT $1::int + $2::int", index, step))
                assert await pool.fetchval("SELECT $1::jsonb", {"i": index}) == {"i": index}
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", index)
            return got

        results = await asyncio.gather(*(client(index) for index in range(CLIENTS)))
        assert results == [[index + step for step in range(25)] for index in range(CLIENTS)]
        # No session state reached a server session other clients share.
        assert await pool.fetchval("SHOW idle_in_transaction_session_timeout") == "0"
    finally:
        await pool.close()


async def test_processes_starting_at_once_migrate_through_the_pooler_each_file_once(
    small_pgbouncer: PgBouncer, empty_database: str
) -> None:
    url = small_pgbouncer.url(empty_database)
    runs = await asyncio.gather(*(migrate_url(url) for _ in range(6)))
    applied = sorted(migration.version for run in runs for migration in run)
    assert applied == [migration.version for migration in discover()]
    # Nothing is left holding the lock: a second run finds nothing to do, at once.
    async with asyncio.timeout(5):
        assert await migrate_url(url) == []


async def test_without_a_direct_url_jobs_submitted_in_a_transaction_still_run(
    processes: Cluster,
    cluster_settings: Settings,
    sentinel_redis: SentinelRedis,
    db: asyncpg.Pool,
) -> None:
    """The listener cannot LISTEN through the pooler: it says so, and the reconciler gives
    the jobs their tokens instead."""
    processes.settings = replace(cluster_settings, database_direct_url="")
    worker = await processes.worker()
    await processes.until(lambda: bool(log_records(worker, "commit_listener.behind_pooler")))
    # The application's own transaction goes through the pooler too. (Its Redis is the
    # primary itself: this submission needs none, and the test is about Postgres.)
    app_settings = replace(
        processes.settings, redis_url=f"redis://127.0.0.1:{sentinel_redis.primary_port}/0"
    )
    async with Tidings(app_settings) as tidings:
        app_conn = await connect(processes.settings.database_url)
        try:
            async with app_conn.transaction():
                job = await tidings.submit("noop", {}, connection=app_conn)
        finally:
            await app_conn.close()
    await until_all_finished(db, [job["id"]], within_s=15)
    await assert_each_ran_once(db, [job["id"]])


async def test_servers_and_workers_run_jobs_through_pgbouncer_and_sentinel(
    processes: Cluster, cluster_settings: Settings, db: asyncpg.Pool
) -> None:
    server = await processes.server(port=cluster_settings.port)
    await processes.worker()
    async with Servers([f"http://127.0.0.1:{cluster_settings.port}"]) as servers:
        keys = await servers.submit_many(200, "noop", {})
        stream = await servers.follow(
            await servers.submit("sleep_steps", {"steps": 5, "delay_s": 0.02})
        )
    ids = await job_ids(db, keys)
    await until_all_finished(db, [*ids, stream.job_id], within_s=30)
    await assert_each_ran_once(db, [*ids, stream.job_id])
    assert [kind for _, kind, _ in stream.events][-1] == "succeeded"
    # Nothing the server did through the pooler was refused by Postgres.
    assert not [line for line in server.lines if "prepared statement" in line]
