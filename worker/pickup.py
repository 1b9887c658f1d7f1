"""Push pickup: an ARQ consumer that sleeps until work arrives instead of polling hard.

ARQ's loop polls the queue every `poll_delay`. This subclass replaces only that loop:
after each pass it waits for a wake-up (a token due now was enqueued, or one of its own
jobs finished and freed a slot) or for the next deferred token to come due, and falls
back to a slow poll in case a wake-up was lost.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from arq.connections import create_pool
from arq.utils import timestamp_ms
from arq.worker import Worker


class PushWorker(Worker):
    """An ARQ worker whose poll loop is driven by wake-ups, with `fallback_s` as a floor."""

    def __init__(self, *args: Any, fallback_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fallback_s = fallback_s
        self.woken = asyncio.Event()
        self._started_last_pass = 0

    def wake(self) -> None:
        """Poll now."""
        self.woken.set()

    async def main(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        self.ctx["redis"] = self.pool
        while True:
            self.woken.clear()
            self._started_last_pass = 0
            await self._poll_iteration()
            if self._started_last_pass:
                continue  # a full read may have left more due tokens behind
            with suppress(TimeoutError):
                async with asyncio.timeout(await self._idle_wait_s()):
                    await self.woken.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # Tokens stay in the queue while they run; skipping the ones running here saves
        # ARQ three round trips each to find that out.
        fresh = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        before = len(self.tasks)
        await super().start_jobs(fresh)
        self._started_last_pass = len(self.tasks) - before

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self.woken.set()  # a slot is free: take the next due token, if any

    async def _idle_wait_s(self) -> float:
        """Until the next deferred token is due, at most `fallback_s`."""
        now = timestamp_ms()
        upcoming = await self.pool.zrangebyscore(
            self.queue_name, min=f"({now}", max="+inf", start=0, num=1, withscores=True
        )
        if not upcoming:
            return self.fallback_s
        next_due_ms: float = upcoming[0][1]
        return max(0.0, min(self.fallback_s, (next_due_ms - now) / 1000))
