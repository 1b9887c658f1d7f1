"""The reaper: running jobs of lost workers go back to their queue.

Postgres is the truth. The reaper re-queues running jobs whose worker stopped
heartbeating (the reconciler, `worker/reconciler.py`, gives tokens back when Redis lost
them). Every worker runs one; a transaction-scoped advisory lock lets one act at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import asyncpg
import structlog
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import jobs, locks, workers
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.events import event_json

log = structlog.get_logger("tidings.maintenance")


class Reaper:
    """Re-queues (or, out of attempts, fails) the running jobs of silent workers.

    A worker is silent only if it could have heartbeated. When this reaper itself could
    not reach Postgres, the workers it would judge were most likely cut off too, so once
    it is back it judges nobody until they have had `silence_s` to heartbeat again.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        names: queue.Names,
        *,
        silence_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._names = names
        self._silence_s = silence_s
        self._clock = clock
        self._lost_contact = False
        self._judge_from = -math.inf

    async def run_once(self) -> int:
        """One pass; returns how many jobs it recovered."""
        try:
            requeued, failed = await self._reap()
        except CONNECTION_ERRORS:
            self._lost_contact = True
            raise
        await hand_back(self._redis, self._names, [*requeued, *failed], "worker_lost")
        return len(requeued) + len(failed)

    async def _reap(self) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        async with self._pool.acquire() as conn, conn.transaction():
            if self._lost_contact:
                self._lost_contact = False
                self._judge_from = self._clock() + self._silence_s
                log.info("reaper.deferred", after_s=self._silence_s, reason="postgres_was_away")
            if self._clock() < self._judge_from:
                return [], []
            if not await locks.try_transaction_lock(conn, locks.REAPER):
                return [], []
            requeued = await jobs.requeue_lost(conn, silence_s=self._silence_s)
            failed = await jobs.fail_lost(conn, silence_s=self._silence_s)
            await workers.delete_silent_workers(conn, silence_s=self._silence_s)
        return requeued, failed


async def hand_back(
    redis: ArqRedis, names: queue.Names, rows: list[asyncpg.Record], reason: str
) -> None:
    """Log and publish recovery events, and give each re-queued job a token."""
    for row in rows:
        if row["status"] == "queued":
            log.warning(
                "job.requeued", job_id=str(row["job_id"]), attempt=row["attempt"], reason=reason
            )
        else:
            log.warning(
                "job.failed",
                job_id=str(row["job_id"]),
                attempt=row["attempt"],
                error_type="WorkerLost",
            )
    if not rows:
        return
    tokens = [
        queue.Token(row["job_id"], row["attempt"], row["job_queue"], row["job_run_at"])
        for row in rows
        if row["status"] == "queued"
    ]
    await queue.enqueue_fresh(redis, names, tokens, [event_json(row) for row in rows])
