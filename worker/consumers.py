"""The ARQ consumers of a worker: one per queue, supervised, drained on stop.

ARQ's own loop exits when it loses Redis; here a consumer that fails, for that or any
other reason, is started again with backoff, while jobs already running carry on (their
state lives in Postgres).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import structlog
from redis.exceptions import RedisError

from tidings.core.service import Service
from tidings.worker.pickup import PushWorker

log = structlog.get_logger("tidings.consumers")


class Consumers:
    """Runs the given ARQ workers until stopped, restarting any that lose Redis."""

    def __init__(self, workers: dict[str, PushWorker], *, on_restart: Callable[[], None]) -> None:
        self._by_queue = workers
        self._workers = list(workers.values())
        # A consumer that loses Redis is an outage to wait out; any other error is a bug,
        # said loudly, and still no reason to leave the queue without this worker.
        self._services = [
            Service(
                f"consumer-{worker.queue_name}",
                worker.async_run,
                outages=(RedisError, OSError),
                on_restart=on_restart,
                log_name="consumer",
                log_fields={"queue": worker.queue_name},
            )
            for worker in self._workers
        ]

    def start(self) -> None:
        for service in self._services:
            service.start()

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
        await asyncio.gather(*(service.stop() for service in self._services))

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
