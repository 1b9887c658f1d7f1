"""A worker claims only jobs of tasks it has registered.

Before, a worker that lacked a task still claimed that task's jobs on its queue and
failed them for good (`UnknownTask`): a rolling deploy that adds a task failed every job
an old worker reached first. Now such a job waits, says why, and runs as soon as a worker
with the task is up. A job whose token never reached Redis is claimed by an idle worker
straight from Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest

from tests.support.api import stream_kinds
from tests.support.servers import ServerHandle, WorkerHandle, start_worker
from tidings.core.db import jobs
from tidings.core.db import tasks as task_rows
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest
from tidings.worker.registry import TaskRegistry

NEW_MODULE = "tests.support.rolling_tasks"
RAN = ["queued", "started", "succeeded"]


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def test_a_job_no_live_worker_can_run_waits_says_why_and_runs_when_one_starts(
    settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    # A new worker registered the task, then stopped (or has not rolled out here yet);
    # the module's worker runs the old task set only.
    new_tasks = TaskRegistry.from_modules([NEW_MODULE])
    await task_rows.upsert_tasks(pool, [spec.registry_row() for spec in new_tasks])
    response = await client.post("/jobs", json={"task": "rolled_out"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    # A job submitted after it runs to its end: the old worker has looked at the queue.
    after = (await client.post("/jobs", json={"task": "noop"})).json()["id"]
    assert await stream_kinds(client, after) == RAN

    waiting = (await client.get(f"/jobs/{job_id}")).json()
    assert waiting["status"] == "queued", waiting
    assert waiting["waiting_reason"] == "no worker has task 'rolled_out' on queue 'default'"
    assert (await client.get(f"/jobs/{after}")).json()["waiting_reason"] is None
    metrics = (await client.get("/metrics")).text
    assert 'tidings_jobs_without_worker{queue="default"} 1.0' in metrics

    async with start_worker(replace(settings, tasks=(*settings.tasks, NEW_MODULE))):
        assert await stream_kinds(client, job_id) == RAN
    done = (await client.get(f"/jobs/{job_id}")).json()
    assert done["result"] == {"ran_on": "a new worker"}
    assert done["waiting_reason"] is None


async def test_a_job_whose_token_never_reached_redis_is_claimed_by_an_idle_worker(
    settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    # The reconciler runs when the worker starts, then not for an hour: only the idle
    # worker's own look at Postgres can start a job that appears after that.
    quiet = replace(settings, queues=("untokened",), reconcile_s=3600.0)
    async with start_worker(quiet):
        request = JobRequest(task="noop", args={}, queue="untokened", max_attempts=1, timeout_s=60)
        row = await jobs.insert_job(pool, request.new_job(uuid.uuid4()))  # no token, no notice
        assert row is not None
        assert await stream_kinds(client, str(row["id"])) == RAN
