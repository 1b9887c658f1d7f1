"""A running job's relatives: the jobs it depends on, and the children it spawns.

`spawn` submits a child: same tenant, the parent's batch, `parent_id` set, and an
idempotency key made of the parent's id and the child's place among the spawns of this
run. `wait_children` returns the children's results once they have all ended; until then
it raises `WaitForChildren`, which ends the attempt in `waiting` and frees its worker slot.
When the last child ends, the database queues the parent again in that same transaction,
and the task runs again from the top: its spawns find the children they made last time
(same keys), and `wait_children` now returns. A task that waits is written to be re-run,
as a retried task already must be (docs/decisions.md, "Batches and dependencies").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from tidings.core.db import dependencies as relatives
from tidings.core.job_request import job_request
from tidings.core.model import TERMINAL_STATUSES, Status
from tidings.core.submission import Submitter
from tidings.core.validation import ArgsValidators
from tidings.worker.retry import PermanentError


class WaitForChildren(BaseException):
    """Raised by `Job.wait_children` while children still run: the runtime parks the job.

    A BaseException, like `asyncio.CancelledError`, so that a task's `except Exception`
    cannot swallow it.
    """


class DependencyFailed(PermanentError):
    """A dependency (or child) ended without success and the job's policy is `fail`."""


@dataclass(frozen=True)
class Relative:
    """A job this one depends on, or one of its children, as it stands."""

    id: str
    task: str
    status: Status
    result: Any
    error: dict[str, Any] | None


def _relative(row: asyncpg.Record) -> Relative:
    return Relative(str(row["id"]), row["task"], Status(row["status"]), row["result"], row["error"])


@dataclass
class Family:
    """What a running attempt needs to spawn children and read its relatives."""

    job_id: uuid.UUID
    tenant: str
    batch_id: uuid.UUID | None
    on_dependency_failure: str
    pool: asyncpg.Pool
    submitter: Submitter
    validators: ArgsValidators
    max_args_bytes: int
    spawned: int = 0

    async def spawn(self, task: str, args: dict[str, Any] | None = None, **options: Any) -> str:
        """Submit a child job (`options` as in `POST /jobs`: queue, priority, depends_on,
        ...); its id. Running the task again spawns nothing new: the same call finds the
        child it made before."""
        body: dict[str, Any] = {"task": task, "args": args or {}, **options}
        request = await job_request(
            self.pool, self.validators, body, tenant=self.tenant, max_args_bytes=self.max_args_bytes
        )
        self.spawned += 1
        key = f"{self.job_id}:{options.get('idempotency_key', self.spawned)}"
        request = replace(
            request, parent_id=self.job_id, batch_id=self.batch_id, idempotency_key=key
        )
        if self.spawned == 1:
            await relatives.mark_parent(self.pool, job_id=self.job_id)
        submitted = await self.submitter.submit(request)
        assert submitted is not None  # only cron slots are refused
        return str(submitted.row["id"])

    async def children(self) -> list[Relative]:
        """Every child spawned so far, oldest first."""
        return [_relative(row) for row in await relatives.children(self.pool, job_id=self.job_id)]

    async def wait_children(self) -> dict[str, Any]:
        """The results of the children, by id, once all have ended; raises `WaitForChildren`
        before that (the job waits without a worker slot and runs again on fan-in), and
        `DependencyFailed` if one failed and the job's policy is `fail`."""
        kids = await self.children()
        if any(kid.status not in TERMINAL_STATUSES for kid in kids):
            raise WaitForChildren
        self._check(kids)
        return {kid.id: kid.result for kid in kids if kid.status == Status.SUCCEEDED}

    async def dependencies(self) -> list[Relative]:
        """The jobs this one depends on (an `ignore`d failure is no longer among them)."""
        rows = await relatives.dependencies(self.pool, job_id=self.job_id)
        return [_relative(row) for row in rows]

    async def dependency_results(self) -> dict[str, Any]:
        """The results of the dependencies that succeeded, by id."""
        deps = await self.dependencies()
        return {dep.id: dep.result for dep in deps if dep.status == Status.SUCCEEDED}

    def _check(self, kids: list[Relative]) -> None:
        if self.on_dependency_failure != "fail":
            return
        for kid in kids:
            if kid.status in (Status.FAILED, Status.CANCELLED):
                raise DependencyFailed(f"child {kid.id} ({kid.task}) ended {kid.status}")
