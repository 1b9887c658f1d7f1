"""The reconciler: waiting jobs get their ARQ tokens back when Redis lost them.

Postgres is the truth; a token only wakes a worker to claim the best job of its queue,
so tokens are interchangeable. Each pass looks at each of the worker's queues:

- Redis lost its data (a flush, a restart without persistence, a failover to an empty
  replica: the queue's presence key is gone): every waiting job of the queue lacks its
  token. The pass reads them all, a page at a time through a cursor, and puts back what
  is missing. The presence key is set only when that is done, so a pass cut short is
  made again by the next.
- Routine: a token claimed another job (tokens are interchangeable), a server died
  between commit and enqueue, a transaction's notice went unheard. Only the front of
  the queue matters — the due jobs claims take next; a job deeper in a backlog waits for
  those ahead of it anyway and is checked when it gets there (a deferred one once it is
  due), and an idle worker claims untokened due jobs on its fallback poll besides. The
  pass reads the first `front` due jobs, so its cost does not grow with the backlog:
  reading a backlog of 100,000 every pass held each worker's loop for most of a second.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import asyncpg
import structlog
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import jobs

log = structlog.get_logger("tidings.reconciler")

# How many due jobs at the front of each queue a routine pass checks.
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
        self._queues = queues
        self._front = front
        self._page = page

    async def run_once(self) -> int:
        """One pass over every queue; returns how many tokens it restored."""
        return sum([await self._reconcile(name) for name in self._queues])

    async def _reconcile(self, queue_name: str) -> int:
        presence_key = self._names.presence_key(queue_name)
        redis_lost = not await self._redis.exists(presence_key)
        checked = restored = 0
        async with aclosing(self._pages(queue_name, redis_lost)) as pages:
            async for rows in pages:
                checked += len(rows)
                restored += await queue.restore_missing(self._redis, self._names, tokens(rows))
        if redis_lost:
            await self._redis.set(presence_key, 1)
        if restored:
            # Redis lost its data: worth an operator's look. With the marker still there, a
            # job whose token claimed another job got a new one: routine under load.
            report = log.warning if redis_lost else log.info
            report(
                "reconciler.restored",
                queue=queue_name,
                tokens=restored,
                waiting=checked,
                redis_lost=redis_lost,
            )
        return restored

    async def _pages(
        self, queue_name: str, redis_lost: bool
    ) -> AsyncGenerator[list[asyncpg.Record], None]:
        """After a loss, every waiting job of the queue a page at a time (each restored
        before the next is read); else its front."""
        if not redis_lost:
            yield await jobs.front_of_queue(self._pool, queue=queue_name, limit=self._front)
            return
        pages = jobs.waiting_job_pages(self._pool, queue=queue_name, page=self._page)
        async with aclosing(pages):
            async for rows in pages:
                yield rows


def tokens(rows: list[asyncpg.Record]) -> list[queue.Token]:
    """The token each waiting job should have."""
    return [queue.Token(row["id"], row["attempt"], row["queue"], row["run_at"]) for row in rows]
