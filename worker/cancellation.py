"""Cancel requests for running jobs reach the worker that runs them.

The server publishes the job id on the cancel channel; every worker hears it and the one
running the job cancels its coroutine. The channel is only the fast path: the heartbeat
also asks Postgres for cancel requests on this worker's jobs, so a lost message delays a
cancel by one heartbeat period at most.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress

import structlog

from core.subscriber import follow_channel

log = structlog.get_logger("tidings.cancel")


class CancelListener:
    """Follows the cancel channel and hands each job id to `cancel`."""

    def __init__(
        self,
        redis_url: str,
        channel: str,
        cancel: Callable[[uuid.UUID], bool],
        *,
        on_connect: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis_url = redis_url
        self._channel = channel
        self._cancel = cancel
        self._on_connect = on_connect
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            follow_channel(
                self._redis_url, self._channel, self._on_message, on_connect=self._on_connect
            ),
            name="tidings-cancel-listener",
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def cancel_all(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Cancel each job of `job_ids` that runs here (from the heartbeat's check)."""
        for job_id in job_ids:
            if self._cancel(job_id):
                log.info("job.cancel_received", job_id=str(job_id), via="heartbeat")

    def _on_message(self, data: bytes) -> None:
        try:
            job_id = uuid.UUID(data.decode())
        except ValueError:
            log.warning("cancel.malformed", data=data[:100])
            return
        if self._cancel(job_id):
            log.info("job.cancel_received", job_id=str(job_id), via="channel")
