"""The real thing: `python -m server` and `python -m worker` as processes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support.servers import LogWatch, free_port, spawn
from tests.support.sse import job_events
from tidings.core import queue
from tidings.core.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def process_settings(settings: Settings) -> Settings:
    # debug: a duplicate delivery that finds its job gone says so in `token.idle`, at debug.
    return replace(settings, port=free_port(), concurrency=5, log_level="debug")


@pytest.fixture(scope="module")
async def server_process(process_settings: Settings) -> AsyncIterator[str]:
    process = await spawn("tidings.server", process_settings)
    await process.wait_for_line("server.ready")
    yield f"http://127.0.0.1:{process_settings.port}"
    assert await process.stop() == 0, process.output


@pytest.fixture(scope="module")
async def workers(process_settings: Settings) -> AsyncIterator[LogWatch]:
    watch = LogWatch()
    for _ in range(2):
        await watch.spawn("tidings.worker", process_settings)
    await watch.until_count("worker.ready", 2)
    yield watch
    for worker in watch.processes:
        assert await worker.stop() == 0, worker.output


async def test_sleep_steps_streams_seq_1_to_n_in_order_then_closes(
    server_process: str, workers: LogWatch
) -> None:
    async with httpx.AsyncClient(base_url=server_process, timeout=30) as client:
        submitted = await client.post(
            "/jobs", json={"task": "sleep_steps", "args": {"steps": 20, "delay_s": 0.05}}
        )
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        assert submitted.headers["location"].endswith(f"/jobs/{job_id}")
        async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
            events = [event async for event in job_events(source)]
        job = (await client.get(f"/jobs/{job_id}")).json()

    assert [seq for seq, _, _ in events] == list(range(1, 24))
    assert [kind for _, kind, _ in events] == ["queued", "started"] + ["progress"] * 20 + [
        "succeeded"
    ]
    progress = [data["current"] for _, kind, data in events if kind == "progress"]
    assert progress == sorted(progress) == [float(step) for step in range(1, 21)]
    assert events[-1][2]["data"]["result"] == {"steps": 20}
    assert events[-1][2]["data"]["run_s"] >= 20 * 0.05
    assert job["status"] == "succeeded"
    assert job["result"] == {"steps": 20}
    assert job["progress"]["fraction"] == 1.0


async def test_two_workers_run_each_of_200_jobs_exactly_once_despite_duplicate_deliveries(
    server_process: str,
    workers: LogWatch,
    process_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    succeeded_before = workers.count("job.succeeded")
    idle_before = workers.count("token.idle")
    async with httpx.AsyncClient(base_url=server_process, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/jobs", json={"task": "noop"}) for _ in range(200))
        )
    assert {r.status_code for r in responses} == {202}
    job_ids = [uuid.UUID(r.json()["id"]) for r in responses]

    # A stale duplicate of every delivery, as ARQ would redeliver after a lost worker:
    # a delivery only claims a waiting job, so the duplicates find nothing to run again.
    redis = await queue.connect(process_settings.redis_url)
    try:
        names = queue.Names(process_settings.namespace)
        for job_id in job_ids:
            await redis.enqueue_job(
                queue.RUN_FUNCTION,
                str(job_id),
                1,
                _job_id=f"{job_id}:1:duplicate",
                _queue_name=names.queue("default"),
            )
    finally:
        await redis.aclose()

    # Every job succeeds; once all have, no job is waiting, so nothing can start again.
    await workers.until_count("job.succeeded", succeeded_before + len(job_ids))
    await workers.until_count("token.idle", idle_before + len(job_ids))

    kinds = await pool.fetch(
        "SELECT job_id, kind FROM job_history WHERE job_id = ANY($1) ORDER BY job_id, seq",
        job_ids,
    )
    per_job = Counter((row["job_id"], row["kind"]) for row in kinds)
    for job_id in job_ids:
        assert per_job[(job_id, "queued")] == 1
        assert per_job[(job_id, "started")] == 1
        assert per_job[(job_id, "succeeded")] == 1
    assert workers.count("job.succeeded") == succeeded_before + len(job_ids)
    assert workers.count("job.started") == succeeded_before + len(job_ids)
    ran_on = await pool.fetch(
        "SELECT worker_id, count(*) FROM jobs WHERE id = ANY($1) GROUP BY worker_id", job_ids
    )
    assert len(ran_on) == 2, "both workers should have taken part"
