"""Running one job attempt: claim it in Postgres, run the task, record how it ended.

ARQ only delivers `(job_id, attempt)`; every decision is taken and recorded here, so a
stale or duplicate ARQ delivery is fenced by the claim and does nothing.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import structlog
from arq.connections import ArqRedis
from pydantic import ValidationError
from redis.exceptions import RedisError

from core import queue
from core.db import jobs
from core.model import event_json
from worker.job import Job
from worker.registry import TaskRegistry, TaskSpec
from worker.reporter import Reporter

RUNTIME_KEY = "tidings"

log = structlog.get_logger("tidings.worker")


class TaskTimeout(TimeoutError):
    """The attempt ran past its timeout and was cancelled."""


@dataclass
class Runtime:
    """What every job in a worker process shares; kept in ARQ's ctx under `RUNTIME_KEY`."""

    worker_id: str
    pool: asyncpg.Pool
    redis: ArqRedis
    names: queue.Names
    registry: TaskRegistry
    reporter: Reporter

    async def execute(self, job_id: uuid.UUID, attempt: int) -> None:
        """Claim the attempt; if this worker won it, run it to a terminal event."""
        bound = log.bind(job_id=str(job_id), attempt=attempt, worker_id=self.worker_id)
        claimed = await self.pool.fetchrow(jobs.CLAIM, job_id, attempt, self.worker_id)
        if claimed is None:
            bound.info("job.claim_skipped")
            return
        await self._publish(event_json(claimed))
        bound = bound.bind(task=claimed["task"], queue=claimed["queue"])
        bound.info("job.started")
        started = time.monotonic()
        outcome, value = await self._run(claimed, bound)
        duration_s = round(time.monotonic() - started, 6)
        if outcome == "succeeded":
            await self.reporter.write(jobs.SUCCEED, (job_id, attempt, value))
            bound.info("job.succeeded", duration_s=duration_s)
        else:
            await self.reporter.write(jobs.FAIL, (job_id, attempt, value))
            bound.warning("job.failed", duration_s=duration_s, error_type=value["type"])

    async def _run(
        self, claimed: asyncpg.Record, bound: structlog.typing.FilteringBoundLogger
    ) -> tuple[str, Any]:
        spec = self.registry.get(claimed["task"])
        if spec is None:
            return "failed", error_json("UnknownTask", f"no task named {claimed['task']!r}")
        try:
            kwargs = task_kwargs(spec, claimed["args"])
        except ValidationError as exc:
            return "failed", error_json("InvalidArguments", str(exc))
        job = Job(
            id=claimed["job_id"],
            task=spec.name,
            attempt=claimed["attempt"],
            queue=claimed["queue"],
            timeout_s=claimed["timeout_s"],
            reporter=self.reporter,
            log=bound,
        )
        deadline = asyncio.timeout(job.timeout_s)
        try:
            async with deadline:
                result = await spec.fn(job, **kwargs)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                message = f"timed out after {job.timeout_s:g}s"
                return "failed", error_json(TaskTimeout.__name__, message)
            return "failed", exception_json(exc)
        try:
            orjson.dumps(result)
        except TypeError as exc:
            return "failed", error_json("ResultNotJSON", str(exc))
        return "succeeded", result

    async def _publish(self, event: dict[str, Any]) -> None:
        try:
            await queue.publish_events(self.redis, self.names, [event])
        except (RedisError, OSError) as exc:
            log.warning("publish.failed", error=repr(exc))


def task_kwargs(spec: TaskSpec, args: dict[str, Any]) -> dict[str, Any]:
    """The task's keyword arguments, validated and converted by its args model."""
    model = spec.model.model_validate(args)
    return {name: getattr(model, name) for name in type(model).model_fields}


def error_json(type_name: str, message: str, tb: str | None = None) -> dict[str, Any]:
    """The stored shape of an error: type, message, traceback."""
    return {"type": type_name, "message": message, "traceback": tb}


def exception_json(exc: BaseException) -> dict[str, Any]:
    """An exception as stored on the job, with its formatted traceback."""
    return error_json(
        type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)).rstrip()
    )


async def run_arq_job(ctx: dict[str, Any], job_id: str, attempt: int) -> None:
    """The one function ARQ knows: hands the delivered attempt to the runtime."""
    runtime: Runtime = ctx[RUNTIME_KEY]
    await runtime.execute(uuid.UUID(job_id), attempt)
