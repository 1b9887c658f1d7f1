"""The server's side of submission: a body becomes a validated `JobRequest` (without task
code), and concurrent submissions are group-committed.

Group commit: concurrent submits share one statement and one Redis trip. Alone, each
submission costs a Postgres round trip and a Redis pipeline of its own, and
at a few thousand a second that per-request I/O is most of a server's CPU. Batched (see
`server.batching`), one `jobs.insert_jobs` writes every job of the batch with its `queued`
event, and only after it commits does one pipeline enqueue and publish them all; each
caller awaits its own row. A batch the statement refuses for a reason other than an
unreachable Postgres is retried one job at a time, so a bad submission fails alone and
the others still commit.

Submissions that read before they write (result-cache hits) or name a cron slot keep the
`Submitter`'s one-at-a-time path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from tidings.core import serialization
from tidings.core.db import jobs
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.errors import PayloadTooLarge, Unprocessable
from tidings.core.shapes import MAX_NAME
from tidings.core.submission import JobRequest, Submitted, Submitter
from tidings.server.batching import Batcher
from tidings.server.validation import ArgsValidators, check, validate_submission

TaskRows = dict[str, asyncpg.Record | None]


def parse_run_at(body: dict[str, Any]) -> datetime | None:
    """When the job becomes due: `run_at` (ISO 8601 with offset) or now + `delay_s`."""
    if "run_at" in body and "delay_s" in body:
        raise Unprocessable(
            "give run_at or delay_s, not both",
            {"field": "body.run_at", "reason": "conflicts with delay_s"},
            code="invalid_request",
        )
    if "delay_s" in body:
        return datetime.now(UTC) + timedelta(seconds=body["delay_s"])
    if "run_at" not in body:
        return None
    try:
        run_at = datetime.fromisoformat(body["run_at"])
        if run_at.tzinfo is not None:
            # Postgres needs it in UTC; a time near year 1 or 9999 may not fit there.
            run_at = run_at.astimezone(UTC)
    except (ValueError, OverflowError):
        run_at = None
    if run_at is None or run_at.tzinfo is None:
        raise Unprocessable(
            "run_at must be an ISO 8601 timestamp with a UTC offset",
            {"field": "body.run_at", "reason": f"cannot read {body['run_at']!r}"},
            code="invalid_request",
        )
    return run_at


def check_args_size(args: dict[str, Any], max_bytes: int) -> None:
    """413 when the args encode to more than `max_bytes`; 422 when they cannot be encoded.

    orjson parses nesting up to 1024 levels deep but encodes only 254 (and the args are
    encoded again to hash and store them), so deeper args are refused here, not a 500 later.
    """
    try:
        size = len(serialization.dumps(args))
    except TypeError:  # orjson.JSONEncodeError: "Recursion limit reached"
        raise Unprocessable(
            "args nest too deeply to be stored",
            {"field": "args", "reason": "more than 254 levels of nesting"},
            code="invalid_args",
        ) from None
    if size > max_bytes:
        raise PayloadTooLarge(
            f"args are larger than {max_bytes} bytes",
            {"field": "args", "reason": f"{size} bytes as JSON"},
            code="args_too_large",
        )


async def job_request(
    pool: asyncpg.Pool,
    validators: ArgsValidators,
    body: dict[str, Any],
    *,
    tenant: str,
    max_args_bytes: int,
    header_key: str | None = None,
    tasks: TaskRows | None = None,
) -> JobRequest:
    """Validate one submission against the envelope and its task's registered schema."""
    check(validate_submission, body, root="body", message="the submission is invalid")
    if header_key and len(header_key) > MAX_NAME:
        raise Unprocessable(
            "the submission is invalid",
            {
                "field": "header.Idempotency-Key",
                "reason": f"must be at most {MAX_NAME} characters, got {len(header_key)}",
            },
            code="invalid_request",
        )
    tasks = {} if tasks is None else tasks
    name = body["task"]
    if name not in tasks:
        tasks[name] = await validators.task_row(pool, name)
    task = tasks[name]
    if task is None:
        raise Unprocessable(
            f"unknown task {name!r}",
            {"field": "body.task", "reason": "no worker has registered this task"},
            code="unknown_task",
        )
    args = body.get("args", {})
    validator = validators.for_task(task["name"], task["updated_at"], task["args_schema"])
    check(validator, args, root="args", message=f"args do not match task {name!r}")
    check_args_size(args, max_args_bytes)
    defaults = task["defaults"]
    cache_ttl_s = defaults.get("cache_ttl_s") if body.get("cache", True) else None
    return JobRequest(
        task=task["name"],
        args=args,
        queue=body.get("queue", task["queue"]),
        priority=body.get("priority", 0),
        max_attempts=body.get("max_attempts", defaults["max_attempts"]),
        timeout_s=float(body.get("timeout_s", defaults["timeout_s"])),
        run_at=parse_run_at(body),
        idempotency_key=header_key or body.get("idempotency_key"),
        tenant=tenant,
        cache_ttl_s=cache_ttl_s,
    )


log = structlog.get_logger("tidings.submission")

Outcome = asyncpg.Record | None | BaseException


@dataclass(frozen=True)
class Pending:
    """One submission in a batch, with the id its job will get."""

    request: JobRequest
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)


class SubmitBatcher:
    """Creates jobs in batches of whatever is submitted concurrently."""

    def __init__(
        self,
        submitter: Submitter,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 500,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._submitter = submitter
        self._pool = pool
        self._batcher: Batcher[Pending, asyncpg.Record | None] = Batcher(
            self._insert, name="tidings-submit-batcher", max_batch=max_batch, on_batch=on_batch
        )

    def start(self) -> None:
        """Start batching."""
        self._batcher.start()

    async def close(self) -> None:
        """Write everything submitted so far, then stop batching."""
        await self._batcher.close()

    async def submit(self, request: JobRequest) -> Submitted | None:
        """Create the job, or return the one its idempotency key names (as `Submitter.submit`)."""
        one_at_a_time = request.cache_ttl_s or request.schedule_key is not None
        if one_at_a_time or not self._batcher.running:
            return await self._submitter.submit(request)
        row = await self._batcher.call(Pending(request))
        if row is None:  # its idempotency key was taken, maybe by an earlier row of the batch
            return Submitted(await self._submitter.existing(request), created=False)
        return Submitted(row, created=True)

    async def _insert(self, batch: list[Pending]) -> list[Outcome]:
        try:
            new_jobs = [item.request.new_job(item.job_id) for item in batch]
            rows = await jobs.insert_jobs(self._pool, new_jobs)
        except CONNECTION_ERRORS:
            raise  # Postgres is away: every caller answers 503, none is retried
        except Exception as exc:
            if len(batch) == 1:
                raise
            log.warning("submissions.batch_refused", jobs=len(batch), error=repr(exc))
            return [await self._insert_alone(item) for item in batch]
        await self._submitter.enqueue_committed(rows)
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(item.job_id) for item in batch]

    async def _insert_alone(self, item: Pending) -> Outcome:
        try:
            [outcome] = await self._insert([item])
        except Exception as exc:
            return exc
        return outcome
