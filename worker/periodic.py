"""A background loop with a period: the shape of every maintenance service in a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from tidings.core.service import Service

log = structlog.get_logger("tidings.periodic")

Sleep = Callable[[float], Coroutine[Any, Any, None]]


class Periodic:
    """Runs `action` at start and every `period_s`, or sooner when poked; errors are logged."""

    def __init__(
        self,
        name: str,
        period_s: float,
        action: Callable[[], Awaitable[object]],
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self._period_s = period_s
        self._action = action
        self._sleep = sleep
        self._poked = asyncio.Event()
        self._service = Service(f"tidings-{name}", self._run)

    def start(self) -> None:
        self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    def poke(self) -> None:
        """Run again now rather than at the end of the period."""
        self._poked.set()

    async def _run(self) -> None:
        while True:
            self._poked.clear()
            try:
                await self._action()
            except Exception as exc:  # a failed run is retried next period, never fatal
                log.warning("periodic.failed", service=self.name, error=repr(exc))
            waiting = asyncio.create_task(self._poked.wait())
            sleeping = asyncio.create_task(self._sleep(self._period_s))
            try:
                await asyncio.wait([waiting, sleeping], return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the service is stopped: no helper task outlives the loop
                for task in (waiting, sleeping):
                    task.cancel()
                await asyncio.gather(waiting, sleeping, return_exceptions=True)
