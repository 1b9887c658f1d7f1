"""A rolling deploy that adds a task: old and new workers side by side, then the new ones
restarting. No job fails: old workers never claim the new task's jobs, and those jobs
wait (saying why) while no new worker is up, then run."""

from __future__ import annotations

import signal
import uuid

import asyncpg
import httpx
import pytest

from tests.chaos.checks import assert_each_succeeded_once, poll_until
from tests.chaos.conftest import Cluster, log_records

pytestmark = pytest.mark.chaos

NEW_MODULE = "tests.support.rolling_tasks"
EACH = 40


async def test_a_rolling_deploy_that_adds_a_task_fails_no_job(
    cluster: Cluster, db: asyncpg.Pool
) -> None:
    await cluster.server()
    old = await cluster.worker()
    new_tasks = (*cluster.settings.tasks, NEW_MODULE)
    new = await cluster.worker(tasks=new_tasks)
    new_id = log_records(new, "worker.ready")[0]["worker_id"]

    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        batch = [{"task": "rolled_out"}, {"task": "noop"}] * EACH
        response = await client.post("/jobs/batch", json={"jobs": batch})
        assert response.status_code == 202, response.text
        first = [uuid.UUID(job_id) for job_id in response.json()["ids"]]
        await poll_until(lambda: _all_ended(db, first))
        await assert_each_succeeded_once(db, first)
        ran_on = await db.fetch("SELECT task, worker_id FROM jobs WHERE id = ANY($1)", first)
        assert {row["worker_id"] for row in ran_on if row["task"] == "rolled_out"} == {new_id}

        # The new worker restarts (SIGTERM, drained): meanwhile its task's jobs wait.
        new.signal(signal.SIGTERM)
        assert await new.proc.wait() == 0
        waiting = await client.post("/jobs/batch", json={"jobs": [{"task": "rolled_out"}] * 5})
        second = [uuid.UUID(job_id) for job_id in waiting.json()["ids"]]
        noop = (await client.post("/jobs", json={"task": "noop"})).json()["id"]
        # Once a job submitted after them has run, the old worker has looked at the queue.
        await poll_until(lambda: _all_ended(db, [uuid.UUID(noop)]))
        for job_id in second:
            job = (await client.get(f"/jobs/{job_id}")).json()
            assert job["status"] == "queued", job
            assert "rolled_out" in job["waiting_reason"]
        await cluster.worker(tasks=new_tasks)
        await poll_until(lambda: _all_ended(db, second))
        await assert_each_succeeded_once(db, second)

    failed = await db.fetchval("SELECT count(*) FROM jobs WHERE status = 'failed'")
    assert failed == 0
    assert '"UnknownTask"' not in old.output


async def _all_ended(db: asyncpg.Pool, job_ids: list[uuid.UUID]) -> bool:
    waiting = await db.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1)"
        " AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        job_ids,
    )
    return bool(waiting == 0)
