"""Group commit of calls: what arrives together runs as one batch, each caller gets its own result.

The first call after a quiet spell runs at once, alone; calls that arrive while a batch
is in flight wait and run together as the next one. An idle server adds no latency, and
a busy one pays one round trip per batch instead of one per call. Nothing is queued
without a caller waiting for it, so the pending calls are bounded by the callers (HTTP
requests in flight, for the server).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from tidings.core.service import Service

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Runs `run_batch` on the items of concurrent `call`s, in arrival order.

    `run_batch` returns one outcome per item, a result or an exception for that caller
    alone; if it raises, every caller of the batch gets the exception.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        name: str,
        max_batch: int = 500,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._run_batch = run_batch
        self._name = name
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._pending: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._service = Service(name, self._run, drain=self._finish, stop_timeout_s=None)

    @property
    def running(self) -> bool:
        """Whether `call` is served: started and not closing."""
        return self._service.running

    def start(self) -> None:
        """Start the task that runs the batches."""
        self._service.start()

    async def close(self) -> None:
        """Run every call made so far, then stop."""
        await self._service.stop()

    def _finish(self) -> None:
        self._closing = True
        self._wake.set()

    async def call(self, item: Item) -> Result:
        """Run `item` with whatever else arrives meanwhile; its own outcome. Needs `running`."""
        if not self.running:
            raise RuntimeError(f"{self._name} is not running")
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        self._wake.set()
        return await done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                count = min(len(self._pending), self._max_batch)
                batch = [self._pending.popleft() for _ in range(count)]
                self._on_batch(count)
                await self._settle(batch)
            if self._closing:
                return

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        outcomes: Sequence[Result | BaseException]
        try:
            outcomes = await self._run_batch([item for item, _ in batch])
        except Exception as exc:  # the batch's callers get it; later batches still run
            outcomes = [exc] * len(batch)
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():  # its caller went away
                continue
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
