"""A batch with a fan-in step survives a killed worker and a flushed Redis: every member
and the fan-in job succeed exactly once, and the batch's stream is gapless to its end."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.chaos.checks import assert_each_succeeded_once
from tests.chaos.conftest import Cluster
from tests.chaos.servers import RedisServer
from tests.support.servers import Process

pytestmark = pytest.mark.chaos

MEMBERS = 200
FINISH_WITHIN_S = 90.0

BatchEvent = tuple[str, int | None, dict[str, Any]]


def documents_batch() -> dict[str, Any]:
    """200 `embed_chunk` jobs and a `build_index` that depends on all of them."""
    chunks = [
        {"task": "embed_chunk", "args": {"document": "manual", "chunk": n}, "ref": f"c{n}"}
        for n in range(MEMBERS)
    ]
    index = {
        "task": "build_index",
        "args": {"document": "manual"},
        "depends_on": [f"c{n}" for n in range(MEMBERS)],
    }
    return {"jobs": [*chunks, index], "name": "manual"}


async def follow(client: httpx.AsyncClient, batch_id: str, into: list[BatchEvent]) -> None:
    """The batch's stream until the server ends it (after `batch.finished`)."""
    async with aconnect_sse(client, "GET", f"/batches/{batch_id}/events") as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            if sse.data == "":
                continue
            sequenced = sse.event != "progress"
            into.append((sse.event, int(sse.id) if sequenced else None, sse.json()))


async def check_outcome(
    db: asyncpg.Pool, client: httpx.AsyncClient, created: dict[str, Any], events: list[BatchEvent]
) -> None:
    job_ids = [uuid.UUID(job_id) for job_id in created["job_ids"]]
    await assert_each_succeeded_once(db, job_ids)
    seqs = [seq for _, seq, _ in events if seq is not None]
    assert seqs == list(range(1, len(seqs) + 1))
    kind, _, finished = events[-1]
    assert kind == "batch.finished"
    assert finished["counts"] == {"succeeded": MEMBERS + 1, "failed": 0, "cancelled": 0}
    index = (await client.get(f"/jobs/{created['job_ids'][-1]}")).json()
    assert index["result"] == {"document": "manual", "chunks": MEMBERS, "complete": True}
    # The stream carried each member's transitions once: no member ended twice in it.
    ends = [
        data["job_id"] for kind, _, data in events if kind == "job" and data["kind"] == "succeeded"
    ]
    assert sorted(ends) == sorted(created["job_ids"])


async def run_through(
    cluster: Cluster, db: asyncpg.Pool, fault: Callable[[Process], Awaitable[None]]
) -> None:
    """Submit the batch, follow its stream, inflict `fault` once the worker has finished
    40 members, and check the outcome when the stream ends."""
    await cluster.server()
    worker = await cluster.worker(concurrency=20)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        response = await client.post("/batches", json=documents_batch())
        assert response.status_code == 201, response.text
        created = response.json()
        events: list[BatchEvent] = []
        reader = asyncio.create_task(follow(client, created["id"], events))
        await cluster.until(lambda: worker.output.count('"job.succeeded"') >= 40)
        await fault(worker)
        await asyncio.wait_for(reader, FINISH_WITHIN_S)
        await check_outcome(db, client, created, events)


async def test_a_sigkilled_worker_loses_no_member_and_the_fan_in_runs_once(
    cluster: Cluster, db: asyncpg.Pool
) -> None:
    async def kill_and_replace(victim: Process) -> None:
        await cluster.worker(concurrency=20)
        victim.signal(signal.SIGKILL)
        assert await victim.proc.wait() == -signal.SIGKILL

    await run_through(cluster, db, kill_and_replace)


async def test_a_flushed_redis_loses_no_member_and_the_fan_in_runs_once(
    cluster: Cluster, db: asyncpg.Pool, redis_server: RedisServer
) -> None:
    async def flush(_worker: Process) -> None:
        await redis_server.flushall()

    await run_through(cluster, db, flush)
