"""`/jobs`: submit (one or a batch), read, list, cancel and retry jobs."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

import asyncpg
import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core import queue
from tidings.core.db import jobs, workers
from tidings.core.errors import Conflict, NotFound, Unprocessable
from tidings.core.events import event_json
from tidings.core.job_lookup import id_prefix_range, load_job, parse_job_id
from tidings.core.job_request import batch_requests, job_request
from tidings.core.model import Status, job_json, waiting_eta_s
from tidings.core.shapes import Job
from tidings.server.auth import ALL_JOBS, authority_of, tenant_of
from tidings.server.body import read_json_object
from tidings.server.mount import app_url
from tidings.server.responses import JSONResponse
from tidings.server.state import ServerState, state_of

log = structlog.get_logger("tidings.server")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def base_url(request: Request) -> str:
    """Where links start: this app's URL, with the mount point when mounted in a host app."""
    return app_url(request)


def render(
    request: Request,
    row: asyncpg.Record,
    eta_s: float | None = None,
    waiting_reason: str | None = None,
) -> Job:
    """A job's JSON, with a stream token in `links.events` for browsers."""
    key_id = authority_of(request.scope).key_id
    token = state_of(request).tokens.issue(str(row["id"]), row["tenant"], key_id)
    return job_json(row, base_url(request), eta_s, token, waiting_reason)


async def submit_job(request: Request) -> Response:
    """POST /jobs: validate, persist job and `queued` event, then enqueue and publish."""
    state = state_of(request)
    body = await read_json_object(request, state.settings.max_body_bytes)
    job = await job_request(
        state.pool,
        state.validators,
        body,
        tenant=tenant_of(request),
        max_args_bytes=state.settings.max_args_bytes,
        header_key=request.headers.get("idempotency-key"),
    )
    submitted = await state.batcher.submit(job)
    assert submitted is not None  # only cron slots can be refused
    row = submitted.row
    location = f"{base_url(request)}/jobs/{row['id']}"
    return JSONResponse(
        render(request, row),
        status_code=202 if submitted.created else 200,
        headers={"Location": location},
    )


async def submit_batch(request: Request) -> Response:
    """POST /jobs/batch: every job in one transaction, or none with per-item errors."""
    state = state_of(request)
    body = await read_json_object(request, state.settings.max_batch_bytes)
    requests = await batch_requests(
        state.pool,
        state.validators,
        body,
        tenant=tenant_of(request),
        max_args_bytes=state.settings.max_args_bytes,
    )
    rows = await state.submitter.submit_many(requests)
    return JSONResponse(
        {"ids": [str(row["id"]) for row in rows], "count": len(rows)}, status_code=202
    )


async def get_job(request: Request) -> Response:
    """GET /jobs/{id}; a waiting job's ETA includes the queue ahead of it."""
    state = state_of(request)
    row = await load_job(state.pool, request.path_params["job_id"], tenant_of(request))
    eta_s = waiting_reason = None
    if row["status"] in (Status.QUEUED, Status.RETRYING):
        inputs = await jobs.eta_inputs(
            state.pool,
            task=row["task"],
            queue=row["queue"],
            priority=row["priority"],
            run_at=row["run_at"],
            created_at=row["created_at"],
            live_within_s=workers.live_within_s(state.settings.heartbeat_s),
            tenant=row["tenant"],
        )
        starts_in_s = (row["run_at"] - datetime.now(UTC)).total_seconds()
        # run_s is an SQL numeric (a Decimal), which the JSON response cannot encode.
        run_s = None if inputs["run_s"] is None else float(inputs["run_s"])
        eta_s = waiting_eta_s(run_s, inputs["ahead"], inputs["slots"], starts_in_s)
        if not inputs["slots"]:  # no live worker of its queue has registered its task
            waiting_reason = f"no worker has task {row['task']!r} on queue {row['queue']!r}"
    return JSONResponse(render(request, row, eta_s, waiting_reason))


async def cancel_job(request: Request) -> Response:
    """POST /jobs/{id}/cancel: waiting → cancelled now; running → its worker is told."""
    state = state_of(request)
    job_id = parse_job_id(request.path_params["job_id"])
    event = await jobs.cancel_waiting(state.pool, job_id=job_id, tenant=tenant_of(request))
    if event is not None:
        await _publish(state, event)
        cancelled = await load_job(state.pool, str(job_id), tenant_of(request))
        return JSONResponse(render(request, cancelled))
    row = await jobs.request_cancel(state.pool, job_id=job_id, tenant=tenant_of(request))
    if row is not None:
        try:
            await state.redis.publish(state.names.cancel_channel, str(job_id))
        except (RedisError, OSError) as exc:
            # The worker's heartbeat finds the request in Postgres instead.
            log.warning("cancel.publish_failed", job_id=str(job_id), error=repr(exc))
        return JSONResponse(render(request, row), status_code=202)
    current = await load_job(state.pool, str(job_id), tenant_of(request))
    raise Conflict(
        f"job is {current['status']}; only queued, retrying or running jobs can be cancelled",
        {"status": current["status"]},
        code="illegal_transition",
    )


async def retry_job(request: Request) -> Response:
    """POST /jobs/{id}/retry: a failed or cancelled job runs again as a new attempt."""
    state = state_of(request)
    job_id = parse_job_id(request.path_params["job_id"])
    tenant = tenant_of(request)
    # The job is read in the retry's own transaction: once that commits, a worker may claim
    # it at once, and the answer is the job as the retry left it.
    async with state.pool.acquire() as conn, conn.transaction():
        event = await jobs.manual_retry(conn, job_id=job_id, tenant=tenant)
        current = await jobs.get_job(conn, job_id=job_id, tenant=tenant)
    if current is None:
        raise NotFound(f"no job with id {str(job_id)!r}")
    if event is None:
        raise Conflict(
            f"job is {current['status']}; only failed or cancelled jobs can be retried",
            {"status": current["status"]},
            code="illegal_transition",
        )
    token = queue.Token(job_id, event["attempt"], event["job_queue"], event["job_run_at"])
    try:
        await queue.enqueue_fresh(state.redis, state.names, [token])
    except (RedisError, OSError) as exc:
        log.warning("job.enqueue_failed", job_id=str(job_id), error=repr(exc))
    await _publish(state, event)
    return JSONResponse(render(request, current), status_code=202)


async def _publish(state: ServerState, event: asyncpg.Record) -> None:
    try:
        await queue.publish_events(state.redis, state.names, [event_json(event)])
    except (RedisError, OSError) as exc:
        log.warning("publish.failed", job_id=str(event["job_id"]), error=repr(exc))


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
    """GET /jobs?status=&task=&queue=&id_prefix=&limit=&cursor=: newest first, cursor paging."""
    state = state_of(request)
    params = request.query_params
    limit = _parse_limit(params.get("limit"))
    cursor = params.get("cursor")
    id_prefix = params.get("id_prefix")
    rows = await jobs.list_jobs(
        state.pool,
        tenant=tenant_of(request),
        status=_parse_status(params.get("status")),
        task=_parse_text("task", params.get("task")),
        queue=_parse_text("queue", params.get("queue")),
        id_between=id_prefix_range(id_prefix) if id_prefix is not None else None,
        before=_decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    events_token = state.tokens.issue(
        ALL_JOBS, tenant_of(request), authority_of(request.scope).key_id
    )
    return JSONResponse(
        {
            "events": f"{base_url(request)}/events?token={events_token}",
            "jobs": [render(request, row) for row in page],
            "next_cursor": next_cursor,
        }
    )


routes = [
    Route("/jobs", submit_job, methods=["POST"]),
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/batch", submit_batch, methods=["POST"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/jobs/{job_id}/retry", retry_job, methods=["POST"]),
]
