"""The worker's row in `workers`: registered at start, touched every period, removed at stop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence

import asyncpg
import structlog

from tidings.core.db import jobs, workers
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.service import Service
from tidings.worker.unclaimed import UnclaimedAttempts

log = structlog.get_logger("tidings.heartbeat")


class Heartbeat:
    """Keeps this worker visibly alive in Postgres, every `period_s` seconds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        worker_id: str,
        *,
        queues: Sequence[str],
        concurrency: int,
        tasks: Sequence[str],
        period_s: float,
        on_cancel_requested: Callable[[list[uuid.UUID]], None] = lambda ids: None,
        running: Callable[[], set[tuple[uuid.UUID, int]]] = set,
        on_lost: Callable[[list[tuple[uuid.UUID, int]]], None] = lambda attempts: None,
    ) -> None:
        self._pool = pool
        self.worker_id = worker_id
        self._queues = list(queues)
        self._concurrency = concurrency
        self._tasks = list(tasks)
        self._period_s = period_s
        self._on_cancel_requested = on_cancel_requested
        self._running = running
        self._on_lost = on_lost
        self.last_beat = time.monotonic()
        self._unclaimed = UnclaimedAttempts()
        self._service = Service("tidings-heartbeat", self._beat)

    async def start(self) -> None:
        """Register the worker, then beat in the background."""
        await self._register()
        self._service.start()

    def age_s(self) -> float:
        """Seconds since the last heartbeat that reached Postgres."""
        return time.monotonic() - self.last_beat

    async def stop(self) -> None:
        """Stop beating and remove the worker's row."""
        await self._service.stop()
        try:
            await workers.deregister_worker(self._pool, worker_id=self.worker_id)
        except CONNECTION_ERRORS as exc:
            log.warning("heartbeat.deregister_failed", error=repr(exc))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._period_s)
            # The attempts running here, taken before the beat: each was claimed before the
            # beat's snapshot, so one Postgres does not list as held here any more either
            # ended meanwhile (then it is no longer running either) or was taken away.
            running = self._running()
            try:
                beat = await workers.heartbeat(self._pool, worker_id=self.worker_id)
                if not beat["registered"]:
                    # A reaper took this worker for lost while it was stalled or cut off,
                    # re-queued its jobs and removed its row. Without a row, every job it
                    # takes from now on would look lost too: register again.
                    await self._register()
                    log.warning("worker.rejoined", worker_id=self.worker_id)
                self.last_beat = time.monotonic()
            except CONNECTION_ERRORS as exc:
                log.warning("heartbeat.failed", error=repr(exc))
                continue
            if beat["cancel_requested"]:
                self._on_cancel_requested(list(beat["cancel_requested"]))
            held = set(zip(beat["held_ids"], beat["held_attempts"], strict=True))
            lost = running - held
            if lost:
                # Those of them still running here were re-queued by a reaper while this
                # worker was stalled or cut off: another worker may run them now, and what
                # this one still does would go unrecorded.
                self._on_lost(sorted(lost))
            orphans = self._unclaimed.orphans(held, running | self._running())
            if orphans:
                await self._hand_back_unclaimed(orphans)

    async def _hand_back_unclaimed(self, attempts: list[tuple[uuid.UUID, int]]) -> None:
        """Re-queue attempts whose claim reply was lost; the reconciler gives them tokens."""
        try:
            rows = await jobs.requeue_unclaimed(
                self._pool, worker_id=self.worker_id, attempts=attempts
            )
        except CONNECTION_ERRORS as exc:
            log.warning("heartbeat.hand_back_failed", error=repr(exc))
            return
        for row in rows:
            log.warning(
                "job.requeued",
                job_id=str(row["job_id"]),
                attempt=row["attempt"],
                reason="claim_reply_lost",
            )

    async def _register(self) -> None:
        await workers.register_worker(
            self._pool,
            worker_id=self.worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self._queues,
            concurrency=self._concurrency,
            tasks=self._tasks,
        )
