"""`/jobs`: submit, read and list jobs."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import queue
from core.db import jobs, registry
from core.errors import Conflict, NotFound, Unprocessable
from core.model import Status, event_json, job_json
from server.body import read_json_object
from server.state import ServerState, state_of
from server.validation import check, validate_submission

log = structlog.get_logger("tidings.server")

DEFAULT_TENANT = "default"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def parse_job_id(raw: str) -> uuid.UUID:
    """A job id from a path; anything that is not a UUID names no job (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no job with id {raw!r}") from None


async def load_job(state: ServerState, raw_id: str) -> asyncpg.Record:
    """The job row for a path id, or 404."""
    row = await state.pool.fetchrow(jobs.GET_JOB, parse_job_id(raw_id), DEFAULT_TENANT)
    if row is None:
        raise NotFound(f"no job with id {raw_id!r}")
    return row


def parse_run_at(body: dict[str, Any]) -> datetime | None:
    """When the job becomes due: `run_at` (ISO 8601 with offset) or now + `delay_s`."""
    if "run_at" in body and "delay_s" in body:
        raise Unprocessable(
            "give run_at or delay_s, not both",
            {"field": "run_at", "reason": "conflicts with delay_s"},
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
            {"field": "run_at", "reason": f"cannot read {body['run_at']!r}"},
            code="invalid_request",
        )
    return run_at


async def submit_job(request: Request) -> Response:
    """POST /jobs: validate, persist job and `queued` event, then enqueue and publish."""
    state = state_of(request)
    body = await read_json_object(request, state.settings.max_body_bytes)
    check(validate_submission, body, root="body", message="the submission is invalid")
    task = await registry.get_task(state.pool, body["task"])
    if task is None:
        raise Unprocessable(
            f"unknown task {body['task']!r}",
            {"field": "task", "reason": "no worker has registered this task"},
            code="unknown_task",
        )
    args = body.get("args", {})
    validator = state.validators.for_task(task["name"], task["updated_at"], task["args_schema"])
    check(validator, args, root="args", message=f"args do not match task {task['name']!r}")
    run_at = parse_run_at(body)
    key = request.headers.get("idempotency-key") or body.get("idempotency_key")
    defaults = task["defaults"]
    fields = {
        "task": task["name"],
        "args": args,
        "queue": body.get("queue", task["queue"]),
        "priority": body.get("priority", 0),
        "max_attempts": body.get("max_attempts", defaults["max_attempts"]),
        "timeout_s": float(body.get("timeout_s", defaults["timeout_s"])),
    }
    try:
        row = await jobs.insert_job(
            state.pool, **fields, idempotency_key=key, tenant=DEFAULT_TENANT, run_at=run_at
        )
    except asyncpg.UniqueViolationError:
        return await _existing_for_key(request, state, key, fields)
    await _enqueue_and_publish(state, row, run_at)
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        job_json(row, base),
        status_code=202,
        headers={"Location": f"{base}/jobs/{row['id']}"},
    )


async def _existing_for_key(
    request: Request, state: ServerState, key: str | None, fields: dict[str, Any]
) -> Response:
    existing = await state.pool.fetchrow(jobs.GET_BY_IDEMPOTENCY_KEY, DEFAULT_TENANT, key)
    if existing is None:  # the key's job vanished between the insert and this read
        raise Conflict("idempotency key is in use; retry the request")
    if any(existing[name] != value for name, value in fields.items()):
        raise Conflict(
            "idempotency key was already used with a different submission",
            {"idempotency_key": key, "job_id": str(existing["id"])},
            code="idempotency_conflict",
        )
    return JSONResponse(job_json(existing, str(request.base_url).rstrip("/")), status_code=200)


async def _enqueue_and_publish(
    state: ServerState, row: asyncpg.Record, run_at: datetime | None
) -> None:
    event = event_json(
        {
            "job_id": row["id"],
            "seq": 1,
            "kind": "queued",
            "status": Status.QUEUED,
            "attempt": row["attempt"],
            "progress_current": None,
            "progress_total": None,
            "message": None,
            "data": None,
            "at": row["event_at"],
        }
    )
    try:
        await queue.enqueue(
            state.redis,
            state.names,
            job_id=row["id"],
            attempt=row["attempt"],
            queue=row["queue"],
            defer_until=run_at,
        )
        await queue.publish_events(state.redis, state.names, [event])
    except (RedisError, OSError) as exc:
        # The job is committed; a worker's reconciler enqueues it when Redis is back.
        log.warning("job.enqueue_failed", job_id=str(row["id"]), error=repr(exc))


async def get_job(request: Request) -> Response:
    """GET /jobs/{id}."""
    row = await load_job(state_of(request), request.path_params["job_id"])
    return JSONResponse(job_json(row, str(request.base_url).rstrip("/")))


def _encode_cursor(row: asyncpg.Record) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created).astimezone(UTC), uuid.UUID(job_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable(
            "cursor is not one this server issued",
            {"field": "cursor", "reason": "unreadable"},
            code="invalid_query",
        ) from None


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    # isascii: str.isdigit() also accepts digits such as '²' that int() rejects.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Unprocessable(
            f"limit must be an integer from 1 to {MAX_LIMIT}",
            {"field": "limit", "reason": f"got {raw!r}"},
            code="invalid_query",
        )
    return int(raw)


def _parse_status(raw: str | None) -> str | None:
    if raw is None or raw in Status.__members__.values():
        return raw
    raise Unprocessable(
        "unknown status",
        {"field": "status", "reason": f"one of {', '.join(Status)}"},
        code="invalid_query",
    )


def _parse_text(field: str, raw: str | None) -> str | None:
    if raw is None or "\x00" not in raw:
        return raw
    raise Unprocessable(
        f"{field} must not contain the NUL character",
        {"field": field, "reason": "Postgres text cannot hold U+0000"},
        code="invalid_query",
    )


async def list_jobs(request: Request) -> Response:
    """GET /jobs?status=&task=&queue=&limit=&cursor=: newest first, cursor paging."""
    state = state_of(request)
    params = request.query_params
    limit = _parse_limit(params.get("limit"))
    cursor = params.get("cursor")
    rows = await jobs.list_jobs(
        state.pool,
        tenant=DEFAULT_TENANT,
        status=_parse_status(params.get("status")),
        task=_parse_text("task", params.get("task")),
        queue=_parse_text("queue", params.get("queue")),
        before=_decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    base = str(request.base_url).rstrip("/")
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    return JSONResponse({"jobs": [job_json(row, base) for row in page], "next_cursor": next_cursor})


routes = [
    Route("/jobs", submit_job, methods=["POST"]),
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
]
