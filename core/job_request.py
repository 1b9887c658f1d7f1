"""A submission body becomes a validated `JobRequest`, without task code.

One path for every way in: `POST /jobs` and `/jobs/batch` on the server, and
`Tidings.submit` in an application's own process. The envelope is checked against its
shape, the args against the task's registered schema, and the task's defaults filled in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tidings.core import serialization
from tidings.core.concurrency_keys import keyed_fields
from tidings.core.errors import PayloadTooLarge, TidingsError, Unprocessable
from tidings.core.shapes import MAX_NAME
from tidings.core.submission import JobRequest
from tidings.core.validation import ArgsValidators, check, validate_batch, validate_submission

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
    request = JobRequest(
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
        depends_on=tuple(body.get("depends_on", ())),
        on_dependency_failure=body.get("on_dependency_failure", "fail"),
        ref=body.get("ref"),
        keys=keyed_fields(defaults, body, args, tenant=tenant, task=task["name"]),
    )
    if request.depends_on and request.keys.acts_at_submit:
        # A strategy decides against the key's jobs at submit time; a job that waits for
        # others would be judged long before it could run.
        raise Unprocessable(
            "the submission is invalid",
            {
                "field": "body.depends_on",
                "reason": f"task {request.task!r} uses key_strategy "
                f"{str(request.keys.key_strategy)!r}, which cannot be combined with depends_on",
            },
            code="invalid_request",
        )
    return request


async def batch_requests(
    pool: asyncpg.Pool,
    validators: ArgsValidators,
    body: dict[str, Any],
    *,
    tenant: str,
    max_args_bytes: int,
) -> list[JobRequest]:
    """Validate a batch `{"jobs": [...]}`; one 422 names every invalid item, or none is taken."""
    check(validate_batch, body, root="body", message="the batch is invalid")
    tasks: TaskRows = {}
    requests: list[JobRequest] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(body["jobs"]):
        try:
            requests.append(
                await job_request(
                    pool,
                    validators,
                    item,
                    tenant=tenant,
                    max_args_bytes=max_args_bytes,
                    tasks=tasks,
                )
            )
        except TidingsError as exc:
            errors.append(
                {"index": index, "code": exc.code, "message": exc.message, **(exc.details or {})}
            )
    if errors:
        raise Unprocessable(
            f"{len(errors)} of {len(body['jobs'])} jobs are invalid; nothing was submitted",
            {"errors": errors},
            code="invalid_batch",
        )
    refused = [
        {
            "index": index,
            "code": "invalid_request",
            "message": f"task {request.task!r} uses key_strategy {request.keys.key_strategy!r}, "
            "which applies to single submissions (POST /jobs) only",
        }
        for index, request in enumerate(requests)
        if request.keys.acts_at_submit
    ]
    if refused:
        raise Unprocessable(
            f"{len(refused)} of {len(requests)} jobs are invalid; nothing was submitted",
            {"errors": refused},
            code="invalid_batch",
        )
    return requests
