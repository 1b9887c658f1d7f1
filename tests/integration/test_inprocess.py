"""`Tidings` in an application's own process: submit with no HTTP between, and inside the
application's own transaction (asyncpg, SQLAlchemy), where a job exists only if the
transaction commits."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from tests.support.api import stream_kinds
from tests.support.paths import REPO_ROOT
from tests.support.servers import ServerHandle, WorkerHandle, settings_env, start_worker
from tidings import Tidings
from tidings.core.errors import BadRequest, Conflict, NotFound, Unavailable, Unprocessable
from tidings.core.settings import Settings

RAN = ["queued", "started", "succeeded"]


@pytest.fixture(scope="module")
async def tidings(settings: Settings) -> AsyncIterator[Tidings]:
    async with Tidings(settings) as tidings:
        yield tidings


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    url = settings.database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


async def ran_once(client: httpx.AsyncClient, job_id: str) -> None:
    """The job's stream, followed to its end, shows it queued, started and succeeded once."""
    assert await stream_kinds(client, job_id) == RAN


async def leaves_no_trace(pool: asyncpg.Pool, redis: ArqRedis, job_id: str) -> None:
    """No job row, no event, no queue token: as if never submitted."""
    key = uuid.UUID(job_id)
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE id = $1", key) == 0
    assert await pool.fetchval("SELECT count(*) FROM job_history WHERE job_id = $1", key) == 0
    assert not await redis.exists(job_key_prefix + f"{job_id}:1")


async def test_a_submit_takes_the_same_path_as_post_jobs(
    tidings: Tidings, client: httpx.AsyncClient
) -> None:
    job = await tidings.submit("noop", {}, priority=3, idempotency_key="inproc-1")
    assert job["status"] == "queued" and job["priority"] == 3
    assert job["links"]["self"] == f"/jobs/{job['id']}"
    await ran_once(client, job["id"])
    again = await tidings.submit("noop", {}, priority=3, idempotency_key="inproc-1")
    assert again["id"] == job["id"]
    assert (await tidings.get(job["id"]))["status"] == "succeeded"
    over_http = (await client.get(f"/jobs/{job['id']}")).json()
    assert {k: v for k, v in over_http.items() if k != "links"} == {
        k: v for k, v in (await tidings.get(job["id"])).items() if k != "links"
    }


async def test_bad_input_gets_the_errors_the_http_api_gives(tidings: Tidings) -> None:
    with pytest.raises(Unprocessable) as unknown:
        await tidings.submit("no_such_task")
    assert unknown.value.code == "unknown_task" and unknown.value.status == 422
    with pytest.raises(Unprocessable) as invalid:
        await tidings.submit("sleep_steps", {"steps": "many"})
    assert invalid.value.code == "invalid_args"
    assert invalid.value.details["field"] == "args.steps"
    with pytest.raises(Unprocessable) as envelope:
        await tidings.submit("noop", priority=99)
    assert envelope.value.details["field"] == "body.priority"
    await tidings.submit("noop", queue="parked", idempotency_key="inproc-taken")
    with pytest.raises(Conflict) as taken:
        await tidings.submit("noop", {}, queue="parked", priority=1, idempotency_key="inproc-taken")
    assert taken.value.code == "idempotency_conflict" and taken.value.status == 409
    with pytest.raises(Unprocessable) as batch:
        await tidings.submit_batch([{"task": "noop"}, {"task": "sleep_steps", "args": {"x": 1}}])
    assert batch.value.code == "invalid_batch"
    assert [error["index"] for error in batch.value.details["errors"]] == [1]
    with pytest.raises(NotFound):
        await tidings.get(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        await tidings.get("not-an-id")


async def test_an_unstarted_instance_says_how_to_start_it(settings: Settings) -> None:
    with pytest.raises(Unavailable) as unstarted:
        await Tidings(settings).submit("noop")
    assert unstarted.value.code == "not_started"
    assert "async with Tidings()" in unstarted.value.message


async def test_a_job_submitted_in_a_committed_transaction_runs_once(
    tidings: Tidings, settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    # A plain asyncpg connection: its codecs read JSON as text, unlike tidings' own pool.
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            job = await tidings.submit("sleep_steps", {"steps": 1, "delay_s": 0}, connection=conn)
            assert job["args"] == {"steps": 1, "delay_s": 0} and job["status"] == "queued"
            # Not visible to anyone else before the commit.
            outside = await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE id = $1", uuid.UUID(job["id"])
            )
            assert outside == 0
    finally:
        await conn.close()
    assert await stream_kinds(client, job["id"]) == ["queued", "started", "progress", "succeeded"]


async def test_a_rolled_back_transaction_leaves_no_job(
    tidings: Tidings, pool: asyncpg.Pool, redis: ArqRedis, client: httpx.AsyncClient
) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with pool.acquire() as conn, conn.transaction():
            gone = await tidings.submit("noop", connection=conn)
            raise Rollback
    # A job committed after it runs: every notice before it was handled by then.
    async with pool.acquire() as conn, conn.transaction():
        after = await tidings.submit("noop", connection=conn)
    await ran_once(client, after["id"])
    await leaves_no_trace(pool, redis, gone["id"])


async def test_a_savepoint_rolled_back_inside_a_committed_transaction_leaves_no_job(
    tidings: Tidings, pool: asyncpg.Pool, redis: ArqRedis, client: httpx.AsyncClient
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        savepoint = conn.transaction()
        await savepoint.start()
        gone = await tidings.submit("noop", connection=conn)
        await savepoint.rollback()
        kept = await tidings.submit("noop", connection=conn)
    await ran_once(client, kept["id"])
    await leaves_no_trace(pool, redis, gone["id"])


async def test_a_taken_key_in_a_transaction_leaves_the_transaction_usable(
    tidings: Tidings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    first = await tidings.submit("noop", idempotency_key="inproc-tx-key")
    async with pool.acquire() as conn, conn.transaction():
        same = await tidings.submit("noop", connection=conn, idempotency_key="inproc-tx-key")
        assert same["id"] == first["id"]
        with pytest.raises(Conflict):
            await tidings.submit(
                "noop", connection=conn, priority=2, idempotency_key="inproc-tx-key"
            )
        assert await conn.fetchval("SELECT 1") == 1  # not aborted
        batch = await tidings.submit_batch(
            [{"task": "noop"}, {"task": "noop", "priority": 1}], connection=conn
        )
    for job in (first, *batch):
        await ran_once(client, job["id"])


async def test_a_connection_outside_a_transaction_is_refused(
    tidings: Tidings, pool: asyncpg.Pool, engine: AsyncEngine
) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(BadRequest) as bare:
            await tidings.submit("noop", connection=conn)
        assert bare.value.code == "not_in_transaction"
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE queue = 'never'") == 0
    async with engine.connect() as sa_conn:
        with pytest.raises(BadRequest) as sqlalchemy:
            await tidings.submit("noop", connection=sa_conn)
        assert sqlalchemy.value.code == "not_in_transaction"
    with pytest.raises(BadRequest) as other:
        await tidings.submit("noop", connection=object())
    assert other.value.code == "unsupported_connection"


async def test_sqlalchemy_sessions_commit_and_roll_back_their_jobs(
    tidings: Tidings,
    engine: AsyncEngine,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    client: httpx.AsyncClient,
) -> None:
    async with AsyncSession(engine) as session, session.begin():
        # Nothing run on the session yet: its driver transaction starts on demand.
        kept = await tidings.submit("noop", connection=session)
        await session.execute(text("SELECT 1"))
    await ran_once(client, kept["id"])

    async with AsyncSession(engine) as session:
        await session.execute(text("SELECT 1"))
        gone = await tidings.submit("noop", connection=session)
        await session.rollback()
    async with engine.begin() as sa_conn:
        after = await tidings.submit("noop", connection=sa_conn)
    await ran_once(client, after["id"])
    await leaves_no_trace(pool, redis, gone["id"])


SUBMIT_COMMIT_AND_DIE = """
import asyncio, os, signal, sys
import asyncpg
from tidings import Tidings

async def main() -> None:
    async with Tidings() as tidings:
        conn = await asyncpg.connect(os.environ["TIDINGS_DATABASE_URL"])
        async with conn.transaction():
            job = await tidings.submit("noop", connection=conn, queue=sys.argv[1])
        print(job["id"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # committed; nothing written to Redis

asyncio.run(main())
"""


async def test_a_process_killed_right_after_its_commit_still_gets_its_job_run(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    """The committing process dies before any Redis write: the listening worker places the
    job's token on the notice Postgres delivers at commit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUBMIT_COMMIT_AND_DIE,
        "default",
        cwd=REPO_ROOT,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    await ran_once(client, output.decode().strip())


async def test_a_job_committed_while_no_worker_listened_runs_when_one_starts(
    tidings: Tidings, settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    """No worker of its queue is up at commit, so no one hears the notice: the reconciler
    of the first worker to start gives it a token."""
    async with pool.acquire() as conn, conn.transaction():
        job = await tidings.submit("noop", connection=conn, queue="late")
    async with start_worker(replace(settings, queues=("late",))):
        await ran_once(client, job["id"])


def test_tidings_is_importable_from_the_package_root() -> None:
    import tidings

    assert tidings.Tidings is Tidings
    with pytest.raises(AttributeError):
        tidings.Nothing  # noqa: B018
