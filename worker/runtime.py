"""Running one job attempt: claim it in Postgres, run the task, record how it ended.

ARQ only delivers tokens; every decision is taken and recorded here. A token makes the
worker claim the best due job of its queue (highest priority first), so stale or
duplicate deliveries are fenced by the claim and at worst find nothing to do.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis
from pydantic import ValidationError
from redis.exceptions import RedisError

from tidings.core import queue, serialization, task_logs
from tidings.core.db import jobs
from tidings.core.events import EventKind, event_json
from tidings.core.model import Status
from tidings.core.submission import Submitter
from tidings.core.validation import ArgsValidators
from tidings.worker.family import Family, WaitForChildren
from tidings.worker.job import Job
from tidings.worker.registry import TaskRegistry, TaskSpec
from tidings.worker.reporter import Reporter
from tidings.worker.retry import is_permanent

# How long a token whose own job is still waiting (e.g. behind a concurrency limit)
# sleeps before it tries again.
WAITING_TOKEN_DELAY_S = 1.0

log = structlog.get_logger("tidings.worker")

# A job attempt: (job id, attempt number).
Attempt = tuple[uuid.UUID, int]


class TaskTimeout(TimeoutError):
    """The attempt ran past its timeout and was cancelled."""


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: the event kind to record and its payload."""

    kind: EventKind
    value: Any = None
    retry_in_s: float = 0.0


@dataclass
class Runtime:
    """What every job in a worker process shares."""

    worker_id: str
    pool: asyncpg.Pool
    redis: ArqRedis
    names: queue.Names
    registry: TaskRegistry
    reporter: Reporter
    resources: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    running: dict[Attempt, asyncio.Task[Any]] = field(default_factory=dict)
    cancelling: set[Attempt] = field(default_factory=set)
    on_outcome: Callable[[str, str, str], None] = lambda task, queue, outcome: None
    # A task's own log lines kept as events: from this level (None: none), this many per attempt.
    task_log_level: int | None = logging.INFO
    task_log_max: int = 1000
    # Children a task spawns are validated as submissions are.
    validators: ArgsValidators = field(default_factory=ArgsValidators)
    max_args_bytes: int = 256 * 1024

    @cached_property
    def submitter(self) -> Submitter:
        """Creates the jobs tasks spawn."""
        return Submitter(self.pool, self.redis, self.names)

    async def claim(
        self, queue_name: str, count: int, due_for_s: float = 0.0
    ) -> list[asyncpg.Record]:
        """Claim up to `count` of the best due jobs of `queue_name` whose tasks this worker
        has (and that have been due for `due_for_s`), in one statement."""
        return await jobs.claim_jobs(
            self.pool,
            queue=queue_name,
            worker_id=self.worker_id,
            limits=self.registry.concurrency_limits,
            count=count,
            tasks=self.task_names,
            due_for_s=due_for_s,
        )

    @cached_property
    def task_names(self) -> list[str]:
        """The tasks this worker runs: the only ones it claims jobs of."""
        return sorted(spec.name for spec in self.registry)

    async def run_claimed(self, row: asyncpg.Record) -> None:
        """Announce a claimed job's `started` event, run the task, record how it ended."""
        self.reporter.publish_committed(event_json(row))
        bound = log.bind(
            job_id=str(row["id"]),
            task=row["task"],
            attempt=row["attempt"],
            queue=row["queue"],
            worker_id=self.worker_id,
        )
        bound.info("job.started")
        started = time.monotonic()
        outcome = await self._run(row, bound)
        await self._record(row, outcome, bound, round(time.monotonic() - started, 6))

    def abandon(self, attempts: list[Attempt]) -> None:
        """Stop these attempts if they run here: the worker no longer holds them."""
        for job_id, attempt in attempts:
            if self._cancel_attempt((job_id, attempt)):
                log.warning(
                    "job.lost", job_id=str(job_id), attempt=attempt, worker_id=self.worker_id
                )

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Cancel the running attempt of `job_id` here, if this worker runs it."""
        mine = [key for key in self.running if key[0] == job_id]
        return any([self._cancel_attempt(key) for key in mine])

    def _cancel_attempt(self, key: Attempt) -> bool:
        task = self.running.get(key)
        if task is None or task.done():
            return False
        self.cancelling.add(key)
        task.cancel("cancel requested")
        return True

    async def _run(
        self, row: asyncpg.Record, bound: structlog.typing.FilteringBoundLogger
    ) -> Outcome:
        spec = self.registry.get(row["task"])
        if spec is None:
            return Outcome(EventKind.FAILED, error_json("UnknownTask", f"no task {row['task']!r}"))
        try:
            kwargs = task_kwargs(spec, row["args"])
        except ValidationError as exc:
            return Outcome(EventKind.FAILED, error_json("InvalidArguments", str(exc)))
        job = Job(
            id=row["id"],
            task=spec.name,
            attempt=row["attempt"],
            queue=row["queue"],
            timeout_s=row["timeout_s"],
            reporter=self.reporter,
            log=bound,
            resources=self.resources,
            family=Family(
                job_id=row["id"],
                tenant=row["job_tenant"],
                batch_id=row["job_batch"],
                on_dependency_failure=row["on_dependency_failure"],
                pool=self.pool,
                submitter=self.submitter,
                validators=self.validators,
                max_args_bytes=self.max_args_bytes,
            ),
        )
        capture = self._log_capture(job)
        # The task runs in a context of its own, where its log lines go to its capture.
        context = contextvars.copy_context()
        context.run(task_logs.CURRENT.set, capture)
        attempt = asyncio.create_task(
            spec.fn(job, **kwargs), name=f"job-{row['id']}", context=context
        )
        key = (row["id"], row["attempt"])
        self.running[key] = attempt
        deadline = asyncio.timeout(job.timeout_s)
        try:
            async with deadline:
                result = await attempt
        except asyncio.CancelledError:
            if key not in self.cancelling:
                raise  # the worker itself is stopping
            return Outcome(EventKind.CANCELLED)
        except WaitForChildren:
            return Outcome(EventKind.WAITING)
        except Exception as exc:
            if key in self.cancelling:
                # Raised while being cancelled (e.g. by a failing cleanup): the cancel caused
                # it, so the job is cancelled, not retried or failed.
                return Outcome(EventKind.CANCELLED)
            if isinstance(exc, TimeoutError) and deadline.expired():
                exc = TaskTimeout(f"timed out after {job.timeout_s:g}s")
            return self._failure(spec, row, exc)
        finally:
            self.running.pop(key, None)
            self.cancelling.discard(key)
            if capture is not None:
                capture.close()  # before the outcome is written: its note comes first
        try:
            serialization.storable(result)
        except (TypeError, ValueError) as exc:
            return Outcome(EventKind.FAILED, error_json("ResultNotJSON", str(exc)))
        return Outcome(EventKind.SUCCEEDED, result)

    def _log_capture(self, job: Job) -> task_logs.TaskLogCapture | None:
        """Where the attempt's own log lines go, unless capture is off."""
        if self.task_log_level is None:
            return None
        return task_logs.TaskLogCapture(
            lambda message, data: job.log_nowait(message, **data),
            min_level=self.task_log_level,
            max_lines=self.task_log_max,
            known={
                "job_id": str(job.id),
                "task": job.task,
                "attempt": job.attempt,
                "queue": job.queue,
                "worker_id": self.worker_id,
            },
        )

    def _failure(self, spec: TaskSpec, row: asyncpg.Record, exc: Exception) -> Outcome:
        error = exception_json(exc)
        if is_permanent(exc, spec.no_retry) or row["attempt"] >= row["max_attempts"]:
            return Outcome(EventKind.FAILED, error)
        return Outcome(EventKind.RETRYING, error, spec.retry.delay_s(row["attempt"], self.rng))

    async def _record(
        self,
        row: asyncpg.Record,
        outcome: Outcome,
        bound: structlog.typing.FilteringBoundLogger,
        duration_s: float,
    ) -> None:
        job_id, attempt = row["id"], row["attempt"]
        if outcome.kind == EventKind.SUCCEEDED:
            written = await self.reporter.write(
                jobs.succeed, job_id=job_id, attempt=attempt, result=outcome.value
            )
        elif outcome.kind == EventKind.CANCELLED:
            written = await self.reporter.write(jobs.cancel_running, job_id=job_id, attempt=attempt)
        elif outcome.kind == EventKind.WAITING:
            written = await self.reporter.write(
                jobs.wait_for_children, job_id=job_id, attempt=attempt
            )
            if written is None:  # a cancel was requested meanwhile: it ends cancelled
                outcome = Outcome(EventKind.CANCELLED)
                written = await self.reporter.write(
                    jobs.cancel_running, job_id=job_id, attempt=attempt
                )
            elif written["status"] == Status.QUEUED:  # every child ended meanwhile
                arq_id = f"{queue.arq_job_id(job_id, attempt)}:{written['seq']}"
                token = queue.Token(job_id, attempt, row["queue"], written["job_run_at"], arq_id)
                await self._enqueue(token, fresh=True)
        elif outcome.kind == EventKind.RETRYING:
            written = await self.reporter.write(
                jobs.retry,
                job_id=job_id,
                attempt=attempt,
                error=outcome.value,
                delay_s=outcome.retry_in_s,
            )
            if written is not None:
                token = queue.Token(job_id, attempt + 1, row["queue"], written["job_run_at"])
                await self._enqueue(token, fresh=True)
            else:  # a cancel was requested while the attempt failed: it ends cancelled
                outcome = Outcome(EventKind.CANCELLED)
                written = await self.reporter.write(
                    jobs.cancel_running, job_id=job_id, attempt=attempt
                )
        else:
            written = await self.reporter.write(
                jobs.fail, job_id=job_id, attempt=attempt, error=outcome.value
            )
        if written is None:
            bound.warning("job.outcome_fenced", outcome=str(outcome.kind))
            return
        fields: dict[str, Any] = {"duration_s": duration_s}
        if outcome.kind in (EventKind.FAILED, EventKind.RETRYING):
            fields["error_type"] = outcome.value["type"]
            fields["error_message"] = log_text(outcome.value["message"])
        if outcome.kind == EventKind.RETRYING:
            fields["retry_in_s"] = round(outcome.retry_in_s, 3)
        # A failed job is the one outcome someone has to look at; a retry is the plan working.
        if outcome.kind == EventKind.FAILED:
            bound.warning("job.failed", **fields)
        else:
            bound.info(f"job.{outcome.kind}", **fields)
        self.on_outcome(row["task"], row["queue"], str(outcome.kind))
        if row["task"] in self.registry.concurrency_limits:
            # A slot of a limited task is free: wake a consumer for whatever waited on it.
            await self._enqueue(queue.Token(None, 0, row["queue"]), fresh=True)

    async def keep_token_alive(
        self, queue_name: str, token_job: uuid.UUID | None, attempt: int
    ) -> None:
        """Nothing was claimable; if this token's own job still waits, try again later."""
        if token_job is None:
            return
        run_at = await jobs.waiting_run_at(self.pool, job_id=token_job, attempt=attempt)
        if run_at is None:
            # Its job already ran (claimed by another token): routine after a burst, when the
            # reconciler gave tokens to jobs whose own were used elsewhere.
            log.debug("token.idle", job_id=str(token_job), attempt=attempt)
            return
        retry_at = max(run_at, datetime.now(UTC) + timedelta(seconds=WAITING_TOKEN_DELAY_S))
        arq_id = f"{queue.arq_job_id(token_job, attempt)}:{uuid.uuid4().hex[:8]}"
        log.info("token.deferred", job_id=str(token_job), attempt=attempt)
        await self._enqueue(queue.Token(token_job, attempt, queue_name, retry_at, arq_id), True)

    async def _enqueue(self, token: queue.Token, fresh: bool) -> None:
        try:
            if fresh:
                await queue.enqueue_fresh(self.redis, self.names, [token])
            else:
                await queue.enqueue(self.redis, self.names, token)
        except (RedisError, OSError) as exc:
            # The job waits in Postgres; the reconciler gives it a token again.
            log.warning("token.enqueue_failed", job_id=str(token.job_id), error=repr(exc))


def task_kwargs(spec: TaskSpec, args: dict[str, Any]) -> dict[str, Any]:
    """The task's keyword arguments, validated and converted by its args model."""
    model = spec.model.model_validate(args)
    return {name: getattr(model, name) for name in type(model).model_fields}


# Longest error message a log line carries; the whole one is on the job.
LOG_MESSAGE_CHARS = 500


def log_text(message: str) -> str:
    """An error message cut to `LOG_MESSAGE_CHARS` for a log line."""
    if len(message) <= LOG_MESSAGE_CHARS:
        return message
    return message[: LOG_MESSAGE_CHARS - 1] + "…"


def error_json(type_name: str, message: str, tb: str | None = None) -> dict[str, Any]:
    """The stored shape of an error: type, message, traceback (U+0000 cannot be stored)."""
    return {
        "type": type_name,
        "message": message.replace("\x00", "\ufffd"),
        "traceback": None if tb is None else tb.replace("\x00", "\ufffd"),
    }


def exception_json(exc: BaseException) -> dict[str, Any]:
    """An exception as stored on the job, with its formatted traceback."""
    return error_json(
        type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)).rstrip()
    )
