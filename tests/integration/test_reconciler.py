"""The reconciler: what a routine pass checks (the due front of each queue, whatever the
backlog), and what a pass after Redis lost a queue's data restores (every waiting job of
it, a page at a time). No worker reads these queues: the tokens stay where the tests put
them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from tidings.core import queue
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter
from tidings.worker.reconciler import Reconciler

JOBS = 5


@dataclass(frozen=True)
class Untokened:
    """Waiting jobs of a queue of their own whose tokens Redis no longer holds."""

    names: queue.Names
    queue: str
    keys: list[str]  # their token keys, highest priority (claimed first) first
    deferred_key: str  # the token key of a job due in an hour, above them all


@pytest.fixture
async def untokened(settings: Settings, pool: asyncpg.Pool, redis: ArqRedis) -> Untokened:
    """Five due jobs, one per priority, and a deferred one at a higher priority than any,
    whose tokens are then deleted, as a flush or a lost enqueue leaves them."""
    names = queue.Names(f"{settings.namespace}-{uuid.uuid4().hex[:8]}")
    queue_name = f"untokened-{uuid.uuid4().hex[:8]}"
    due = [
        JobRequest("noop", {}, queue_name, max_attempts=1, timeout_s=60.0, priority=priority)
        for priority in range(JOBS)
    ]
    later = datetime.now(UTC) + timedelta(hours=1)
    deferred = JobRequest(
        "noop", {}, queue_name, max_attempts=1, timeout_s=60.0, priority=JOBS, run_at=later
    )
    rows = await Submitter(pool, redis, names).submit_many([*due, deferred])
    by_priority = [key_of(row) for row in sorted(rows[:JOBS], key=lambda row: -row["priority"])]
    deferred_key = key_of(rows[JOBS])
    assert await redis.exists(*by_priority, deferred_key) == JOBS + 1
    await redis.delete(*by_priority, deferred_key)
    return Untokened(names, queue_name, by_priority, deferred_key)


def key_of(row: asyncpg.Record) -> str:
    return job_key_prefix + queue.arq_job_id(row["id"], row["attempt"])


async def held(redis: ArqRedis, keys: Sequence[str]) -> list[bool]:
    return [bool(await redis.exists(key)) for key in keys]


async def test_a_routine_pass_gives_tokens_back_at_the_due_front_of_the_queue_only(
    pool: asyncpg.Pool, redis: ArqRedis, untokened: Untokened
) -> None:
    # Redis kept the queue's data: a routine pass.
    await redis.set(untokened.names.presence_key(untokened.queue), 1)
    reconciler = Reconciler(pool, redis, untokened.names, (untokened.queue,), front=2)

    assert await reconciler.run_once() == 2
    assert await held(redis, untokened.keys) == [True, True, False, False, False]
    # The deferred job outranks them, but no claim takes it before it is due.
    assert await held(redis, [untokened.deferred_key]) == [False]
    assert await reconciler.run_once() == 0  # the front has its tokens


async def test_a_pass_after_redis_lost_its_data_restores_every_waiting_job_page_by_page(
    pool: asyncpg.Pool, redis: ArqRedis, untokened: Untokened, monkeypatch: pytest.MonkeyPatch
) -> None:
    names, queue_name = untokened.names, untokened.queue
    reconciler = Reconciler(pool, redis, names, (queue_name,), front=2, page=2)
    pages: list[int] = []
    restore = queue.restore_missing

    async def counted(redis: ArqRedis, names: queue.Names, tokens: list[queue.Token]) -> int:
        pages.append(len(tokens))
        return await restore(redis, names, tokens)

    monkeypatch.setattr(queue, "restore_missing", counted)

    assert await reconciler.run_once() == JOBS + 1
    assert pages == [2, 2, 2]  # each page restored before the next was read
    assert await redis.exists(*untokened.keys, untokened.deferred_key) == JOBS + 1
    assert await redis.zcard(names.queue(queue_name)) == JOBS + 1
    assert await redis.exists(names.presence_key(queue_name))
    # Marked as kept: the next pass is routine, and finds nothing missing.
    assert await reconciler.run_once() == 0
    assert await redis.zcard(names.queue(queue_name)) == JOBS + 1


async def test_a_loss_is_judged_per_queue(
    pool: asyncpg.Pool, redis: ArqRedis, untokened: Untokened
) -> None:
    """Another worker's queue marked as kept does not make this queue's pass routine."""
    names = untokened.names
    await redis.set(names.presence_key("another-queue"), 1)
    assert await Reconciler(pool, redis, names, (untokened.queue,)).run_once() == JOBS + 1
