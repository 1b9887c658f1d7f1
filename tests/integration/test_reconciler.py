"""The reconciler: what a routine pass checks (the front of each queue, whatever the
backlog), and what a pass after Redis lost its data restores (every waiting job, a page
at a time). No worker reads these queues: the tokens stay where the tests put them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

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


@pytest.fixture
async def untokened(settings: Settings, pool: asyncpg.Pool, redis: ArqRedis) -> Untokened:
    """Five waiting jobs, one per priority, whose tokens are then deleted, as a flush or a
    lost enqueue leaves them."""
    names = queue.Names(f"{settings.namespace}-{uuid.uuid4().hex[:8]}")
    queue_name = f"untokened-{uuid.uuid4().hex[:8]}"
    requests = [
        JobRequest("noop", {}, queue_name, max_attempts=1, timeout_s=60.0, priority=priority)
        for priority in range(JOBS)
    ]
    rows = await Submitter(pool, redis, names).submit_many(requests)
    by_priority = sorted(rows, key=lambda row: -row["priority"])
    keys = [job_key_prefix + queue.arq_job_id(row["id"], row["attempt"]) for row in by_priority]
    assert await redis.exists(*keys) == JOBS
    await redis.delete(*keys)
    return Untokened(names, queue_name, keys)


async def test_a_routine_pass_gives_tokens_back_at_the_front_of_the_queue_only(
    pool: asyncpg.Pool, redis: ArqRedis, untokened: Untokened
) -> None:
    await redis.set(untokened.names.presence_key, 1)  # Redis kept its data: a routine pass
    reconciler = Reconciler(pool, redis, untokened.names, (untokened.queue,), front=2)

    assert await reconciler.run_once() == 2
    held = [bool(await redis.exists(key)) for key in untokened.keys]
    assert held == [True, True, False, False, False]
    assert await reconciler.run_once() == 0  # the front has its tokens


async def test_a_pass_after_redis_lost_its_data_restores_every_waiting_job_page_by_page(
    pool: asyncpg.Pool, redis: ArqRedis, untokened: Untokened
) -> None:
    names, queue_name = untokened.names, untokened.queue
    reconciler = Reconciler(pool, redis, names, (queue_name,), front=2, page=2)

    assert await reconciler.run_once() == JOBS
    assert await redis.exists(*untokened.keys) == JOBS
    assert await redis.zcard(names.queue(queue_name)) == JOBS
    assert await redis.exists(names.presence_key)
    # Marked as kept: the next pass is routine, and finds nothing missing.
    assert await reconciler.run_once() == 0
    assert await redis.zcard(names.queue(queue_name)) == JOBS
