"""The ARQ consumers of a worker: one per queue, supervised, drained on stop.

ARQ's own loop exits when it loses Redis; here a consumer that fails, for that or any
other reason, is started again with backoff, while jobs already running carry on (their
state lives in Postgres).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import structlog
from redis.exceptions import RedisError

from tidings.worker.pickup import PushWorker

log = structlog.get_logger("tidings.consumers")

MAX_RESTART_DELAY_S = 5.0


class Consumers:
    """Runs the given ARQ workers until stopped, restarting any that lose Redis."""

    def __init__(self, workers: dict[str, PushWorker], *, on_restart: Callable[[], None]) -> None:
        self._by_queue = workers
        self._workers = list(workers.values())
        self._on_restart = on_restart
        self._supervisors: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._supervisors = [
            asyncio.create_task(self._supervise(worker), name=f"consumer-{worker.queue_name}")
            for worker in self._workers
        ]

    def wake(self, queue: str) -> None:
        """A token for `queue` is due now: let its consumer poll at once."""
        consumer = self._by_queue.get(queue)
        if consumer is not None:
            consumer.wake()

    def in_flight(self) -> list[asyncio.Task[Any]]:
        """The job tasks ARQ is running now."""
        return [task for worker in self._workers for task in worker.running_tasks()]

    async def stop_taking_jobs(self) -> None:
        """Stop polling; running jobs go on."""
        for supervisor in self._supervisors:
            supervisor.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)

    async def drain(self, timeout_s: float) -> list[asyncio.Task[Any]]:
        """Wait up to `timeout_s` for running jobs, then cancel the rest; returns those."""
        running = self.in_flight()
        if running:
            log.info("worker.draining", jobs=len(running), timeout_s=timeout_s)
            _, pending = await asyncio.wait(running, timeout=timeout_s)
        else:
            pending = set()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return list(pending)

    async def close(self) -> None:
        for worker in self._workers:
            with suppress(RedisError, OSError):
                await worker.close()

    async def _supervise(self, worker: PushWorker) -> None:
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                await worker.async_run()
                return
            except (RedisError, OSError) as exc:
                if time.monotonic() - started > MAX_RESTART_DELAY_S:
                    delay = 0.1  # it ran fine for a while: this is a new outage
                log.warning(
                    "consumer.restarting", queue=worker.queue_name, error=repr(exc), delay_s=delay
                )
            except Exception:
                # Not an outage: a bug, or an error nobody expected. Say so, and go on
                # consuming rather than leave the queue without this worker.
                if time.monotonic() - started > MAX_RESTART_DELAY_S:
                    delay = 0.1
                log.exception("consumer.crashed", queue=worker.queue_name, delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
            self._on_restart()
