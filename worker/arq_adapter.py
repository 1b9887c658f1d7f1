"""The one module that touches ARQ's internals, so an ARQ upgrade breaks here or nowhere.

`PushWorker` keeps ARQ's queue format, keys and worker lifecycle but drives the consumer
loop itself, which needs a few of `arq.worker.Worker`'s undocumented attributes: its Redis
pool (`_pool`), its job task table (`tasks`), its slot counters (`job_counter`,
`jobs_complete`) and its health-check write (`heart_beat`). `ArqConsumer` names each use
once; nothing else in tidings reads them. `missing_internals()` lists what a given ARQ
lacks, and a test runs it against the installed ARQ, so a release that renames one of
them fails that test by name instead of failing jobs. pyproject.toml allows only the ARQ
minor versions that test has passed on.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.jobs import deserialize_job_raw
from arq.worker import Worker

# The undocumented Worker attributes used below, and the methods whose role is relied on.
WORKER_ATTRIBUTES = (
    "_pool",
    "tasks",
    "job_counter",
    "jobs_complete",
    "max_jobs",
    "queue_name",
    "queue_read_limit",
    "redis_settings",
    "job_serializer",
    "job_deserializer",
    "expires_extra_ms",
)
WORKER_METHODS = ("main", "close", "heart_beat")


def missing_internals(worker: Worker) -> list[str]:
    """The ARQ internals `ArqConsumer` relies on that `worker` does not have."""
    missing = [name for name in WORKER_ATTRIBUTES if not hasattr(worker, name)]
    missing += [
        f"{name}()"
        for name in WORKER_METHODS
        if not inspect.iscoroutinefunction(getattr(type(worker), name, None))
    ]
    if not isinstance(getattr(worker, "tasks", None), dict):
        missing.append("tasks: dict[str, asyncio.Task]")
    return missing


def read_token(payload: bytes, deserializer: Any) -> tuple[Any, ...]:
    """The args of a queued ARQ job's payload (raises ARQ's `DeserializationError`)."""
    _, args, _, _, _ = deserialize_job_raw(payload, deserializer=deserializer)
    return tuple(args)


class ArqConsumer(Worker):
    """ARQ's Worker with its internals behind names a push consumer can use."""

    async def connect(self) -> ArqRedis:
        """The worker's Redis pool, opened as ARQ's own `main` would open it."""
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        return self._pool

    @property
    def free_slots(self) -> int:
        """How many more jobs may run now."""
        return self.max_jobs - self.job_counter

    def running(self, arq_id: str) -> bool:
        """Whether the token `arq_id` has a task here that has not finished."""
        task = self.tasks.get(arq_id)
        return task is not None and not task.done()

    def running_tasks(self) -> list[asyncio.Task[Any]]:
        """The job tasks that have not finished."""
        return [task for task in self.tasks.values() if not task.done()]

    def start_task(self, arq_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for token `arq_id` in a slot; `finish_task` gives the slot back."""
        self.job_counter += 1
        self.tasks[arq_id] = asyncio.create_task(work, name=f"token-{arq_id}")

    def finish_task(self) -> None:
        """A job task ended: free its slot, and count it as ARQ does."""
        self.job_counter -= 1
        self.jobs_complete += 1

    def forget_finished_tasks(self) -> None:
        """Drop ended tasks from the table, as ARQ's own poll iteration does."""
        for arq_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[arq_id]

    async def cancel_running_tasks(self) -> None:
        """Cancel and await every job task, then empty the table (ARQ's `close` would
        re-raise their cancellations)."""
        running = self.running_tasks()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self.tasks.clear()

    async def write_health_key(self) -> None:
        """Write ARQ's health-check key, as its poll iteration does."""
        await self.heart_beat()
