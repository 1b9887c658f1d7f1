"""A concurrency key stays exact when a worker holding its slots is SIGKILLed.

Three worker processes share 50 jobs over 5 keys with `max_per_key=2`; one is killed
mid-way. The dead worker's running jobs keep counting against their keys until the
reaper re-queues them, so at no instant of the event history do more than two jobs of a
key run, and every job still succeeds exactly once.
"""

from __future__ import annotations

import signal
import uuid
from collections import defaultdict

import asyncpg
import httpx
import pytest

from tests.chaos.checks import assert_each_succeeded_once, poll_until
from tests.chaos.conftest import Cluster
from tests.integration.test_claim_race import running_peak

pytestmark = pytest.mark.chaos

JOBS = 50
KEYS = 5
MAX_PER_KEY = 2
DELAY_S = 0.6
TASKS = ("tidings.worker.tasks.examples", "tests.support.fair_sharing_tasks")


async def test_50_keyed_jobs_on_3_workers_one_killed_never_exceed_the_key_and_succeed_once(
    cluster: Cluster, db: asyncpg.Pool
) -> None:
    await cluster.server(tasks=TASKS)
    workers = [await cluster.worker(tasks=TASKS, concurrency=10) for _ in range(3)]
    victim = workers[0]
    prefix = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        job_ids = []
        for index in range(JOBS):
            response = await client.post(
                "/jobs",
                json={
                    "task": "keyed_sleep",
                    "args": {"key": f"{prefix}-{index % KEYS}", "delay_s": DELAY_S},
                },
            )
            assert response.status_code == 202, response.text
            job_ids.append(uuid.UUID(response.json()["id"]))

    # Mid-way: the victim holds key slots and a good part of the jobs is still to run.
    await cluster.until(lambda: victim.output.count('"job.started"') >= 2)
    victim.signal(signal.SIGKILL)
    assert await victim.proc.wait() == -signal.SIGKILL
    held = await db.fetchval(
        "SELECT count(*) FROM jobs WHERE status = 'running' AND worker_id LIKE $1",
        f"%:{victim.proc.pid}:%",
    )
    left = await db.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status <> 'succeeded'", job_ids
    )
    assert held > 0 and left > JOBS // 4, (held, left)

    async def all_succeeded() -> bool:
        done = await db.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'", job_ids
        )
        return bool(done == JOBS)

    await poll_until(all_succeeded, within_s=90)
    histories = await assert_each_succeeded_once(db, job_ids)
    keys = {
        row["id"]: row["concurrency_key"]
        for row in await db.fetch(
            "SELECT id, concurrency_key FROM jobs WHERE id = ANY($1)", job_ids
        )
    }
    by_key: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for job_id, events in histories.items():
        by_key[keys[job_id]].extend(events)
    assert len(by_key) == KEYS
    peaks = {key: running_peak(events) for key, events in by_key.items()}
    assert set(peaks.values()) == {MAX_PER_KEY}, peaks
    requeued = sum(1 for events in histories.values() for e in events if e["kind"] == "requeued")
    assert requeued == held
