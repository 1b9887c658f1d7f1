"""The reconciler: waiting jobs get their ARQ tokens back when Redis lost them.

Postgres is the truth; a token only wakes a worker to claim the best job of its queue,
so tokens are interchangeable. Two cases need a pass:

- Redis lost its data (a flush, a restart without persistence, a failover to an empty
  replica): every waiting job lacks its token. The pass reads every waiting job, a page
  at a time through a cursor, and puts back what is missing. The presence key is set
  only when that pass is done, so one cut short is made again by the next.
- Routine: a token claimed another job (tokens are interchangeable), a server died
  between commit and enqueue, a transaction's notice went unheard. Only the front of
  each queue matters — the jobs claims take next; a job deeper in a backlog waits for
  those ahead of it anyway and is checked when it gets there. The pass reads the first
  `front` jobs of each queue, so its cost does not grow with the backlog: reading a
  backlog of 100,000 every pass held each worker's loop for most of a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import structlog
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import jobs

log = structlog.get_logger("tidings.maintenance")

# How many jobs at the front of each queue a routine pass checks.
FRONT = 1_000
# How many waiting jobs a pass after a loss reads (and checks in Redis) at a time.
PAGE = 1_000


class Reconciler:
    """Gives waiting jobs of the worker's queues a token when Redis has none for them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        names: queue.Names,
        queues: tuple[str, ...],
        *,
        front: int = FRONT,
        page: int = PAGE,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._names = names
        self._queues = list(queues)
        self._front = front
        self._page = page

    async def run_once(self) -> int:
        """One pass; returns how many tokens it restored."""
        redis_lost = not await self._redis.exists(self._names.presence_key)
        checked = restored = 0
        async for rows in self._pages(redis_lost):
            checked += len(rows)
            restored += await queue.restore_missing(self._redis, self._names, tokens(rows))
        if redis_lost:
            await self._redis.set(self._names.presence_key, 1)
        if restored:
            # Redis lost its data: worth an operator's look. With the marker still there, a
            # job whose token claimed another job got a new one: routine under load.
            report = log.warning if redis_lost else log.info
            report("reconciler.restored", tokens=restored, waiting=checked, redis_lost=redis_lost)
        return restored

    async def _pages(self, redis_lost: bool) -> AsyncIterator[list[asyncpg.Record]]:
        """After a loss, every waiting job a page at a time (each restored before the next
        is read); else the front of each queue."""
        if redis_lost:
            async for rows in jobs.waiting_job_pages(
                self._pool, queues=self._queues, page=self._page
            ):
                yield rows
            return
        for name in self._queues:
            yield await jobs.front_of_queue(self._pool, queue=name, limit=self._front)


def tokens(rows: list[asyncpg.Record]) -> list[queue.Token]:
    """The token each waiting job should have."""
    return [queue.Token(row["id"], row["attempt"], row["queue"], row["run_at"]) for row in rows]
