"""What a worker hears over Redis: cancel requests and wake-ups, on one connection.

A cancel names a job; the worker running it cancels its coroutine. A wake names a queue
that just got a token due now, so an idle consumer polls at once instead of at its
fallback period. Both are the fast path: the heartbeat also finds cancel requests in
Postgres, and the fallback poll finds tokens, so a lost message only delays.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable

import structlog

from tidings.core.queue import Names
from tidings.core.service import Service
from tidings.core.subscriber import follow_channels

log = structlog.get_logger("tidings.signals")


def _wake(wake: Callable[[str], None], queue: str, _data: bytes) -> None:
    wake(queue)


class SignalListener:
    """Follows the cancel channel and the wake channels of the worker's queues."""

    def __init__(
        self,
        redis_url: str,
        names: Names,
        queues: Iterable[str],
        *,
        cancel: Callable[[uuid.UUID], bool],
        wake: Callable[[str], None],
        on_connect: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis_url = redis_url
        self._handlers: dict[str, Callable[[bytes], None]] = {names.cancel_channel: self._on_cancel}
        for queue in queues:
            self._handlers[names.wake_channel(queue)] = functools.partial(_wake, wake, queue)
        self._cancel = cancel
        self._on_connect = on_connect
        self._service = Service("tidings-signals", self._follow)

    def start(self) -> None:
        self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    async def _follow(self) -> None:
        await follow_channels(self._redis_url, self._handlers, on_connect=self._on_connect)

    def cancel_all(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Cancel each job of `job_ids` that runs here (from the heartbeat's check)."""
        for job_id in job_ids:
            if self._cancel(job_id):
                log.info("job.cancel_received", job_id=str(job_id), via="heartbeat")

    def _on_cancel(self, data: bytes) -> None:
        try:
            job_id = uuid.UUID(data.decode())
        except ValueError:
            log.warning("cancel.malformed", data=data[:100])
            return
        if self._cancel(job_id):
            log.info("job.cancel_received", job_id=str(job_id), via="channel")
