"""Redis flushed or restarted empty: Postgres still has every job, so nothing is lost.

The reconciler gives every waiting job a token again; ARQ consumers and pub/sub
subscribers reconnect with backoff instead of exiting; an SSE stream that was open
during the outage re-reads Postgres and still delivers every event once, in order.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.chaos.checks import (
    Event,
    assert_each_succeeded_once,
    assert_gapless,
    progress_of,
    read_stream,
    stream_under_way,
)
from tests.chaos.conftest import Cluster, log_records, register_tasks
from tests.chaos.servers import RedisServer
from tidings.core import queue

pytestmark = pytest.mark.chaos

JOBS = 1_000


async def submit_noops(client: httpx.AsyncClient, count: int) -> list[uuid.UUID]:
    response = await client.post("/jobs/batch", json={"jobs": [{"task": "noop"}] * count})
    assert response.status_code == 202, response.text[:500]
    return [uuid.UUID(job_id) for job_id in response.json()["ids"]]


async def assert_ran_once_each(
    cluster: Cluster, db: asyncpg.Pool, job_ids: list[uuid.UUID]
) -> None:
    """Each job succeeded once, and was started once: nothing ran twice."""
    histories = await assert_each_succeeded_once(db, job_ids)
    for job_id, rows in histories.items():
        assert [row["kind"] for row in rows] == ["queued", "started", "succeeded"], job_id
    assert cluster.logs.count('"job.succeeded"') == len(job_ids)
    assert cluster.logs.count('"job.started"') == len(job_ids)


async def test_flushall_with_1000_jobs_queued_and_no_worker_loses_none(
    cluster: Cluster, db: asyncpg.Pool, redis_server: RedisServer
) -> None:
    await register_tasks(db, cluster.settings)  # as a worker did before it went away
    await cluster.server()
    names = queue.Names(cluster.settings.namespace)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        job_ids = await submit_noops(client, JOBS)
    assert await redis_server.command("ZCARD", names.queue("default")) == JOBS

    await redis_server.flushall()
    assert await redis_server.command("DBSIZE") == 0

    worker = await cluster.worker()
    await cluster.until(lambda: cluster.logs.count('"job.succeeded"') >= JOBS)

    await assert_ran_once_each(cluster, db, job_ids)
    first_pass = log_records(worker, "reconciler.restored")[0]
    assert first_pass["tokens"] == first_pass["waiting"] == JOBS


async def test_flushall_while_a_worker_runs_1000_jobs_loses_none(
    cluster: Cluster, db: asyncpg.Pool, redis_server: RedisServer
) -> None:
    await cluster.server()
    worker = await cluster.worker()
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        job_ids = await submit_noops(client, JOBS)
        await cluster.until(lambda: cluster.logs.count('"job.succeeded"') >= 50)
        await redis_server.flushall()
        waiting = await db.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'queued'", job_ids
        )
        await cluster.until(lambda: cluster.logs.count('"job.succeeded"') >= JOBS)

    # The flush hit while most jobs still waited; they came back from Postgres: as tokens
    # the reconciler restored, or claimed by the idle worker with no token at all.
    assert waiting >= JOBS // 2, waiting
    restored = sum(record["tokens"] for record in log_records(worker, "reconciler.restored"))
    untokened = len(log_records(worker, "job.claimed_without_token"))
    assert restored + untokened >= waiting, (restored, untokened)
    await assert_ran_once_each(cluster, db, job_ids)


async def test_redis_restarted_empty_under_a_running_worker_server_and_open_stream(
    cluster: Cluster, db: asyncpg.Pool, redis_server: RedisServer
) -> None:
    server = await cluster.server()
    worker = await cluster.worker()
    steps = 40
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        response = await client.post(
            "/jobs", json={"task": "sleep_steps", "args": {"steps": steps, "delay_s": 0.1}}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        events: list[Event] = []
        stream = await stream_under_way(client, job_id, events)

        await redis_server.kill()
        # Both processes notice, keep running, and retry; the job's progress events are
        # committed but their publishes fail: the stream can only learn them from Postgres.
        await cluster.until(
            lambda: (
                "consumer.restarting" in worker.output
                and "reporter.publish_failed" in worker.output
                and "channel.disconnected" in server.output
            )
        )
        during = await client.post("/jobs", json={"task": "noop"})
        assert during.status_code == 202, during.text
        assert server.proc.returncode is None
        assert worker.proc.returncode is None

        await redis_server.start()
        async with asyncio.timeout(30):
            await stream
        after = await client.post("/jobs", json={"task": "noop"})
        assert after.status_code == 202, after.text
        for later in (during, after):
            async with asyncio.timeout(30):
                tail = await read_stream(client, later.json()["id"])
            assert [kind for _, kind, _ in tail][-1] == "succeeded"

    # One connection carried every event of the job, once each, in order.
    assert_gapless(events)
    assert [kind for _, kind, _ in events] == [
        "queued",
        "started",
        *["progress"] * steps,
        "succeeded",
    ]
    assert progress_of(events, 1) == [float(step) for step in range(1, steps + 1)]
    await assert_each_succeeded_once(
        db, [uuid.UUID(job_id), uuid.UUID(during.json()["id"]), uuid.UUID(after.json()["id"])]
    )
    # Reconnected with backoff rather than exiting: delays grew between attempts.
    delays = [record["delay_s"] for record in log_records(worker, "consumer.restarting")]
    assert delays == sorted(delays), delays
    assert len(log_records(server, "channel.subscribed")) == 2
    assert worker.proc.returncode is None and server.proc.returncode is None
    # The job submitted while Redis was down got its token from the reconciler.
    assert log_records(worker, "reconciler.restored")
    assert await worker.stop() == 0, worker.output
    assert await server.stop() == 0, server.output
