"""The worker's group-committing reporter, against real Postgres and Redis.

The tests play the worker's part: they create jobs on a queue no worker consumes, claim
them with the worker's own statement, and hand notes to a `Reporter` directly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis
from redis.asyncio.client import PubSub

from tidings.core import queue
from tidings.core.db import events, jobs
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter
from tidings.worker.reporter import NoteItem, Reporter

WITHIN_S = 10.0
PARKED = "parked"  # no worker consumes it
STARTED_SEQ = 2  # queued, started


@pytest.fixture
async def published(settings: Settings, redis: ArqRedis) -> AsyncIterator[PubSub]:
    """A subscription to the events channel, made before anything is reported."""
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(queue.Names(settings.namespace).events_channel)
        yield pubsub


async def running_jobs(
    pool: asyncpg.Pool, redis: ArqRedis, names: queue.Names, count: int
) -> list[asyncpg.Record]:
    """`count` jobs, claimed as a worker claims them: running, attempt 1."""
    submitter = Submitter(pool, redis, names)
    for _ in range(count):
        request = JobRequest(task="noop", args={}, queue=PARKED, max_attempts=1, timeout_s=60)
        await submitter.submit(request)
    rows = await jobs.claim_jobs(
        pool, queue=PARKED, worker_id="test-worker", limits={}, count=count, tasks=["noop"]
    )
    assert len(rows) == count
    return rows


def progress(current: float, total: float | None = None, message: str | None = None) -> NoteItem:
    return ("progress", current, total, message, None)


async def received(pubsub: PubSub, job_ids: set[str], count: int) -> list[dict[str, Any]]:
    """The first `count` published events of `job_ids` after the started ones, as decoded."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(WITHIN_S):
        while len(got) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            got += [
                event
                for event in queue.decode_events(message["data"])
                if event["job_id"] in job_ids and event["seq"] > STARTED_SEQ
            ]
    return got


async def stored(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await events.events_after(pool, job_id=job_id, after=STARTED_SEQ)


async def test_interleaved_notes_of_two_jobs_are_stored_and_published_in_order_once(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    settings: Settings,
    reporter: Reporter,
    published: PubSub,
) -> None:
    a, b = await running_jobs(pool, redis, queue.Names(settings.namespace), 2)
    for step in range(1, 51):
        reporter.note(a["id"], 1, progress(step, 50))
        reporter.note(b["id"], 1, progress(step * 10, 500, f"b{step}"))
        if step % 7 == 0:
            await asyncio.sleep(0)  # let the writer take a batch mid-way
    reporter.note(b["id"], 1, ("log", None, None, "done", {"rows": 3}))
    await reporter.flush()

    stored_a, stored_b = await stored(pool, a["id"]), await stored(pool, b["id"])
    assert [e["seq"] for e in stored_a] == list(range(3, 53))
    assert [e["current"] for e in stored_a] == [float(step) for step in range(1, 51)]
    assert [e["seq"] for e in stored_b] == list(range(3, 54))
    assert [e["message"] for e in stored_b] == [f"b{step}" for step in range(1, 51)] + ["done"]
    assert stored_b[-1]["kind"] == "log"
    assert stored_b[-1]["data"] == {"rows": 3}
    # What subscribers got is exactly what a replay from Postgres gives, `at` included.
    live = await received(published, {str(a["id"]), str(b["id"])}, 101)
    assert [e for e in live if e["job_id"] == str(a["id"])] == stored_a
    assert [e for e in live if e["job_id"] == str(b["id"])] == stored_b
    job = await pool.fetchrow(
        "SELECT seq, progress_current, progress_message FROM jobs WHERE id = $1", b["id"]
    )
    assert (job["seq"], job["progress_current"], job["progress_message"]) == (53, 500.0, "b50")


async def test_a_full_buffer_makes_the_task_wait_and_nothing_is_dropped(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    names = queue.Names(settings.namespace)
    (job,) = await running_jobs(pool, redis, names, 1)
    reporter = Reporter(pool, redis, names, max_pending=5)
    reporter.start()
    refusals = 0
    try:
        for step in range(1, 201):
            if not reporter.note(job["id"], 1, progress(step)):
                refusals += 1
                await reporter.room()
        await reporter.flush()
    finally:
        await reporter.close()
    assert refusals > 0
    assert [e["current"] for e in await stored(pool, job["id"])] == [
        float(step) for step in range(1, 201)
    ]


async def test_notes_of_an_attempt_that_ended_are_not_written(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings, reporter: Reporter
) -> None:
    (job,) = await running_jobs(pool, redis, queue.Names(settings.namespace), 1)
    reporter.note(job["id"], 1, progress(1))
    succeeded = await reporter.write(jobs.succeed, job_id=job["id"], attempt=1, result={"ok": True})
    assert succeeded is not None
    reporter.note(job["id"], 1, progress(2))
    await reporter.flush()
    assert [(e["kind"], e["current"]) for e in await stored(pool, job["id"])] == [
        ("progress", 1.0),
        ("succeeded", None),
    ]


async def test_what_postgres_refuses_fails_alone_and_the_rest_of_the_batch_is_written(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings, reporter: Reporter
) -> None:
    a, b = await running_jobs(pool, redis, queue.Names(settings.namespace), 2)
    # Queued together, so that the writer takes them as one batch.
    reporter.note(a["id"], 1, progress(1, 2, "fine"))
    reporter.note(b["id"], 1, progress(1, 2, "jsonb refuses \x00"))  # Job.progress refuses it
    succeeded = asyncio.ensure_future(
        reporter.write(jobs.succeed, job_id=a["id"], attempt=1, result={"ok": True})
    )
    await reporter.flush()
    assert (await succeeded) is not None
    assert [(e["kind"], e["message"]) for e in await stored(pool, a["id"])] == [
        ("progress", "fine"),
        ("succeeded", None),
    ]
    assert await stored(pool, b["id"]) == []
