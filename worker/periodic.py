"""A background loop with a period: the shape of every maintenance service in a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any

import structlog

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
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tidings-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

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
            await asyncio.wait([waiting, sleeping], return_when=asyncio.FIRST_COMPLETED)
            for task in (waiting, sleeping):
                task.cancel()
            await asyncio.gather(waiting, sleeping, return_exceptions=True)
