"""A claim that committed in Postgres while its reply never reached the worker.

The connection breaks between the claim's commit and its reply (a pooler restarted, a
network cut): Postgres has the job `running` on a worker that never heard of it and keeps
beating, so the reaper never takes it. The heartbeat hands it back, and it runs once.
"""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.chaos.checks import assert_each_succeeded_once, poll_until
from tests.chaos.conftest import Cluster, log_records
from tidings.worker.unclaimed import UNCLAIMED_AFTER_S

pytestmark = pytest.mark.chaos


async def test_a_job_claimed_without_the_worker_knowing_is_handed_back_and_runs_once(
    cluster: Cluster, db: asyncpg.Pool
) -> None:
    await cluster.server()
    worker = await cluster.worker()
    worker_id = log_records(worker, "worker.ready")[0]["worker_id"]
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        # Due in an hour: no worker claims it, so the test can claim it in the worker's name.
        response = await client.post("/jobs", json={"task": "noop", "delay_s": 3600})
        assert response.status_code == 202, response.text
    job_id = uuid.UUID(response.json()["id"])
    # What the lost claim left behind: the job running on the worker, which never got it.
    await db.execute(
        "UPDATE jobs SET status = 'running', worker_id = $2, started_at = now() WHERE id = $1",
        job_id,
        worker_id,
    )

    async def succeeded() -> bool:
        status: str = await db.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)
        return status == "succeeded"

    await poll_until(succeeded, within_s=UNCLAIMED_AFTER_S + 15)
    [history] = (await assert_each_succeeded_once(db, [job_id])).values()
    requeued = [row for row in history if row["kind"] == "requeued"]
    assert [(row["attempt"], row["data"]["reason"]) for row in requeued] == [
        (2, "claim_reply_lost")
    ]
    assert [row["attempt"] for row in history if row["kind"] == "succeeded"] == [2]
    records = log_records(worker, "job.requeued")
    assert [(r["job_id"], r["reason"]) for r in records] == [(str(job_id), "claim_reply_lost")]
