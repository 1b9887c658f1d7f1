"""The submission group commit: concurrent submits share a statement, each gets its own job.

Runs against the real Postgres and Redis of the test module. Batches form from whatever is
submitted while a flush is in flight, so the tests submit with `asyncio.gather` and check
what was written, not how long anything took.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import events as job_rows
from tidings.core.errors import Conflict
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitted, Submitter
from tidings.server.submission import SubmitBatcher

QUEUE = "batched"  # no worker consumes it: jobs stay queued


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await queue.connect(settings.redis_url)
    yield redis
    await redis.aclose()


class Batches:
    """The size of every batch the batcher flushed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, size: int) -> None:
        self.sizes.append(size)


async def started(submitter: Submitter, pool: asyncpg.Pool, batches: Batches) -> SubmitBatcher:
    batcher = SubmitBatcher(submitter, pool, on_batch=batches)
    batcher.start()
    return batcher


def request(**fields: object) -> JobRequest:
    base = JobRequest(task="noop", args={}, queue=QUEUE, max_attempts=3, timeout_s=30.0)
    return replace(base, **fields)  # type: ignore[arg-type]


async def events_of(pool: asyncpg.Pool, job_id: object) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT seq, kind FROM job_history WHERE job_id = $1 ORDER BY seq", job_id
    )
    return [(row["seq"], row["kind"]) for row in rows]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_concurrent_submissions_each_get_their_own_job_and_event(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    names = queue.Names(settings.namespace)
    batches = Batches()
    batcher = await started(Submitter(pool, redis, names), pool, batches)
    try:
        results = await asyncio.gather(
            *(batcher.submit(request(args={"n": n}, priority=n % 3)) for n in range(20))
        )
    finally:
        await batcher.close()

    assert all(isinstance(r, Submitted) and r.created for r in results)
    rows = [r.row for r in results if r is not None]
    assert [row["args"] for row in rows] == [{"n": n} for n in range(20)]
    assert [row["priority"] for row in rows] == [n % 3 for n in range(20)]
    assert len({row["id"] for row in rows}) == 20
    for row in rows:
        assert row["status"] == "queued" and row["seq"] == 1
        assert await events_of(pool, row["id"]) == [(1, "queued")]
    # They shared statements: fewer flushes than jobs, every job in exactly one.
    assert sum(batches.sizes) == 20 and len(batches.sizes) < 20
    # Each committed job got its token on the ARQ queue.
    tokens = await redis.zrange(names.queue(QUEUE), 0, -1)
    assert {queue.arq_job_id(row["id"], 1).encode() for row in rows} <= set(tokens)


async def test_a_submission_postgres_refuses_fails_alone(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    batches = Batches()
    batcher = await started(Submitter(pool, redis, queue.Names(settings.namespace)), pool, batches)
    good = [request(args={"good": n}) for n in range(5)]
    bad = request(args={"bad": True}, timeout_s=-1.0)  # violates CHECK (timeout_s > 0)
    try:
        results = await asyncio.gather(
            *(batcher.submit(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True
        )
    finally:
        await batcher.close()

    assert isinstance(results[2], asyncpg.CheckViolationError)
    created = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, Submitted) and r.created for r in created)
    for submitted in created:
        assert isinstance(submitted, Submitted)
        assert await events_of(pool, submitted.row["id"]) == [(1, "queued")]
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE args ? 'bad'") == 0


async def test_jobs_commit_when_redis_is_unreachable(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    unreachable = ArqRedis(host="127.0.0.1", port=unused_port())
    batches = Batches()
    batcher = await started(
        Submitter(pool, unreachable, queue.Names(settings.namespace)), pool, batches
    )
    try:
        results = await asyncio.gather(*(batcher.submit(request(args={"m": n})) for n in range(5)))
    finally:
        await batcher.close()
        await unreachable.aclose()

    for submitted in results:
        assert submitted is not None and submitted.created
        # Safe in Postgres; the reconciler enqueues it once Redis is back.
        status = await pool.fetchval("SELECT status FROM jobs WHERE id = $1", submitted.row["id"])
        assert status == "queued"
        assert await events_of(pool, submitted.row["id"]) == [(1, "queued")]


async def test_one_idempotency_key_in_one_batch_makes_one_job(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    batches = Batches()
    batcher = await started(Submitter(pool, redis, queue.Names(settings.namespace)), pool, batches)
    same = request(args={"k": 1}, idempotency_key="batched-key")
    other_body = request(args={"k": 2}, idempotency_key="batched-key")
    try:
        results = await asyncio.gather(
            batcher.submit(same),
            batcher.submit(same),
            batcher.submit(other_body),
            return_exceptions=True,
        )
    finally:
        await batcher.close()

    first, repeat, conflict = results
    assert isinstance(first, Submitted) and first.created
    assert isinstance(repeat, Submitted) and not repeat.created
    assert repeat.row["id"] == first.row["id"]
    assert isinstance(conflict, Conflict)
    count = await pool.fetchval("SELECT count(*) FROM jobs WHERE idempotency_key = 'batched-key'")
    assert count == 1


async def test_close_writes_what_was_submitted(
    pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    batches = Batches()
    batcher = await started(Submitter(pool, redis, queue.Names(settings.namespace)), pool, batches)
    # gather starts the submissions before close: they are queued when it is asked to stop.
    *results, _ = await asyncio.gather(
        *(batcher.submit(request(args={"c": n})) for n in range(5)), batcher.close()
    )

    assert all(submitted is not None and submitted.created for submitted in results)
    # After close, a submission still works, on the one-at-a-time path.
    late = await batcher.submit(request(args={"late": True}))
    assert late is not None and late.created
    assert sum(batches.sizes) == 5


async def test_the_queued_events_published_at_submit_are_those_the_history_replays(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    """What a live subscriber is told equals what a late one reads: gap-filling would
    otherwise hide a wrong seq on the live path."""
    names = queue.Names(settings.namespace)
    submitter = Submitter(pool, redis, names)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(names.events_channel)
        alone = await submitter.submit(request())
        grouped = await submitter.submit_many([request(), request()])
        assert alone is not None
        rows = [alone.row, *grouped]
        published: list[dict[str, object]] = []
        async with asyncio.timeout(10):
            while len(published) < len(rows):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    published += queue.decode_events(message["data"])
    replayed = [
        event
        for row in rows
        for event in await job_rows.events_after(pool, job_id=row["id"], after=0)
    ]
    assert published == replayed
    assert [event["seq"] for event in published] == [1, 1, 1]
