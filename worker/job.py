"""`Job`: what a running task sees of itself, and how it reports progress."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from tidings.core import serialization
from tidings.core.events import EventKind
from tidings.worker.family import Family, Relative
from tidings.worker.reporter import Reporter

# Plain strings, not enum members: the garbage collector can ignore a tuple of these.
PROGRESS = EventKind.PROGRESS.value
LOG = EventKind.LOG.value


class Job:
    """The running attempt of one job: identity, deadline, progress and log reporting."""

    def __init__(
        self,
        *,
        id: uuid.UUID,
        task: str,
        attempt: int,
        queue: str,
        timeout_s: float,
        reporter: Reporter,
        log: structlog.typing.FilteringBoundLogger,
        resources: dict[str, Any] | None = None,
        family: Family | None = None,
    ) -> None:
        self.id = id
        self.task = task
        self.attempt = attempt
        self.queue = queue
        self.timeout_s = timeout_s
        self.logger = log
        #: What the worker's `@on_startup` hooks created (HTTP clients, pools, …).
        self.resources: dict[str, Any] = {} if resources is None else resources
        self._reporter = reporter
        self._family = family
        self._deadline_monotonic = time.monotonic() + timeout_s
        self.deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)

    def time_left(self) -> float:
        """Seconds until the hard timeout cancels this attempt."""
        return max(0.0, self._deadline_monotonic - time.monotonic())

    async def progress(
        self,
        current: float,
        total: float | None = None,
        message: str | None = None,
        **data: Any,
    ) -> None:
        """Record progress; returns at once (the write is group-committed in the background).

        A message or data that cannot be stored (not JSON, or holding U+0000) raises here,
        in the task, rather than failing the write of other jobs' events later.
        """
        if message is not None or data:
            _check_storable(message, data)
        item = (  # a `core.events.Note`: kind, current, total, message, data
            PROGRESS,
            float(current),
            None if total is None else float(total),
            message,
            data or None,
        )
        if not self._reporter.note(self.id, self.attempt, item):
            await self._reporter.room()

    async def log(self, message: str, **data: Any) -> None:
        """Append a `log` event to the job's stream (checked as `progress` checks)."""
        _check_storable(message, data)
        if not self._reporter.note(self.id, self.attempt, (LOG, None, None, message, data or None)):
            await self._reporter.room()

    def log_nowait(self, message: str, /, **data: Any) -> None:
        """`log` for code that cannot await (a logging handler): the event is queued even
        while the writer is behind, so the caller must bound how many it sends."""
        _check_storable(message, data)
        self._reporter.note(self.id, self.attempt, (LOG, None, None, message, data or None))

    # --- relatives: children and dependencies (`worker/family.py`) ---------------------------

    @property
    def family(self) -> Family:
        if self._family is None:
            raise RuntimeError("this job was not started by a worker: it has no relatives")
        return self._family

    async def spawn(self, task: str, args: dict[str, Any] | None = None, **options: Any) -> str:
        """Submit a child job; its id. Options as in `POST /jobs` (queue, priority,
        depends_on, on_dependency_failure, ...). Cancelling this job cancels its children."""
        return await self.family.spawn(task, args, **options)

    async def wait_children(self) -> dict[str, Any]:
        """The children's results by id, once every child has ended. Until then the attempt
        ends here, freeing its worker slot; the task runs again when the last child ends
        (its `spawn` calls then return the same children)."""
        return await self.family.wait_children()

    async def children(self) -> list[Relative]:
        """The children spawned so far, with their status and result."""
        return await self.family.children()

    async def dependencies(self) -> list[Relative]:
        """The jobs this one depends on, with their status and result."""
        return await self.family.dependencies()

    async def dependency_results(self) -> dict[str, Any]:
        """The results of the dependencies that succeeded, by job id."""
        return await self.family.dependency_results()


def _check_storable(message: str | None, data: dict[str, Any]) -> None:
    if message is not None and not isinstance(message, str):
        raise TypeError(f"message must be a str, not {type(message).__name__}")
    serialization.storable([message, data])
