"""`/batches`: create a batch, read and list batches, follow one, cancel or retry it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core import batches as batch_model
from tidings.core import queue
from tidings.core.db import batches, jobs
from tidings.core.errors import Unprocessable
from tidings.core.events import event_json
from tidings.core.job_pages import Direction, decode_cursor, encode_cursor
from tidings.core.job_request import batch_requests
from tidings.core.model import Status
from tidings.core.validation import check, validate_new_batch
from tidings.server.auth import authority_of, tenant_of
from tidings.server.body import read_json_object
from tidings.server.mount import app_url
from tidings.server.responses import JSONResponse
from tidings.server.routes.job_list import parse_limit
from tidings.server.state import ServerState, state_of
from tidings.server.streams.hub import batch_key

log = structlog.get_logger("tidings.server")


async def load_batch(state: ServerState, request: Request) -> asyncpg.Record:
    """The caller's batch named in the path, or 404 (another tenant's is a 404 too)."""
    return await batch_model.load_batch(
        state.pool, request.path_params["batch_id"], tenant_of(request)
    )


def render(request: Request, row: asyncpg.Record) -> dict[str, Any]:
    """A batch's JSON with its links; the stream link carries a token for EventSource."""
    state = state_of(request)
    batch_id = str(row["id"])
    token = state.tokens.issue(
        batch_key(batch_id), row["tenant"], authority_of(request.scope).key_id
    )
    base = f"{app_url(request)}/batches/{batch_id}"
    links = {"self": base, "events": f"{base}/events?token={token}"}
    return {**batch_model.batch_json(row), "links": links}


async def create_batch(request: Request) -> Response:
    """POST /batches: the jobs, their dependencies and the batch, in one transaction."""
    state = state_of(request)
    body = await read_json_object(request, state.settings.max_batch_bytes)
    check(validate_new_batch, body, root="body", message="the batch is invalid")
    tenant = tenant_of(request)
    requests = await batch_requests(
        state.pool,
        state.validators,
        {"jobs": body["jobs"]},
        tenant=tenant,
        max_args_bytes=state.settings.max_args_bytes,
    )
    batch_id, rows = await batch_model.create(
        state.submitter,
        requests,
        tenant=tenant,
        name=body.get("name"),
        metadata=body.get("metadata"),
    )
    row = await batches.get(state.pool, batch_id=batch_id, tenant=tenant)
    assert row is not None  # committed above; only retention deletes batches
    created = {**render(request, row), "job_ids": [str(r["id"]) for r in rows]}
    return JSONResponse(created, status_code=201, headers={"Location": created["links"]["self"]})


async def get_batch(request: Request) -> Response:
    """GET /batches/{id}: counts per status, aggregate progress and ETA."""
    return JSONResponse(render(request, await load_batch(state_of(request), request)))


async def list_batches(request: Request) -> Response:
    """GET /batches?limit=&cursor=: the caller's batches, newest first."""
    state = state_of(request)
    limit = parse_limit(request.query_params.get("limit"))
    raw_cursor = request.query_params.get("cursor")
    before = None
    if raw_cursor:
        cursor = decode_cursor(raw_cursor)
        if cursor.direction is not Direction.OLDER:
            raise Unprocessable(
                "cursor is not one this list issued",
                {"field": "cursor", "reason": "batches are read newest first only"},
                code="invalid_query",
            )
        before = cursor.key
    rows = await batches.page(state.pool, tenant=tenant_of(request), before=before, limit=limit + 1)
    page = rows[:limit]
    older = encode_cursor(Direction.OLDER, page[-1]) if len(rows) > limit else None
    return JSONResponse({"batches": [render(request, row) for row in page], "next_cursor": older})


async def cancel_batch(request: Request) -> Response:
    """POST /batches/{id}/cancel: every member that has not ended is cancelled (running
    ones are asked to stop, as `POST /jobs/{id}/cancel` does)."""
    state = state_of(request)
    row = await load_batch(state, request)
    tenant = row["tenant"]
    async with state.pool.acquire() as conn, conn.transaction():
        events, running = await jobs.cancel_batch(conn, batch_id=row["id"], tenant=tenant)
    for job_id in running:
        await _signal_cancel(state, job_id)
    await _publish(state, events)
    return JSONResponse(
        {"batch": await _reread(request, row), "cancelled": len(events) + len(running)}
    )


async def retry_batch(request: Request) -> Response:
    """POST /batches/{id}/retry: every failed member runs again. Those that failed by
    themselves first; then, round by round, those failed by a dependency, each once what
    it depends on is retried (it waits for it again)."""
    state = state_of(request)
    row = await load_batch(state, request)
    tenant = row["tenant"]
    failed = await batches.failed_members(state.pool, batch_id=row["id"], tenant=tenant)
    rounds = [
        [m["id"] for m in failed if not m["by_dependency"]],
        [m["id"] for m in failed if m["by_dependency"]],
    ]
    async with state.pool.acquire() as conn, conn.transaction():
        events = await jobs.manual_retry_all(conn, job_ids=rounds[0], tenant=tenant)
        pending = rounds[1]
        while pending:
            retried = await jobs.manual_retry_all(conn, job_ids=pending, tenant=tenant)
            if not retried:
                break  # what is left depends on a job outside the batch that still failed
            events += retried
            done = {event["job_id"] for event in retried}
            pending = [job_id for job_id in pending if job_id not in done]
    tokens = [
        queue.Token(e["job_id"], e["attempt"], e["job_queue"], e["job_run_at"])
        for e in events
        if e["status"] == Status.QUEUED
    ]
    try:
        await queue.enqueue_fresh(state.redis, state.names, tokens, [event_json(e) for e in events])
    except (RedisError, OSError) as exc:
        log.warning("batch.enqueue_failed", batch_id=str(row["id"]), error=repr(exc))
    return JSONResponse({"batch": await _reread(request, row), "retried": len(events)})


async def _reread(request: Request, row: asyncpg.Record) -> dict[str, Any]:
    fresh = await batches.get(state_of(request).pool, batch_id=row["id"], tenant=row["tenant"])
    return render(request, fresh if fresh is not None else row)


async def _signal_cancel(state: ServerState, job_id: uuid.UUID) -> None:
    try:
        await state.redis.publish(state.names.cancel_channel, str(job_id))
    except (RedisError, OSError) as exc:
        # The worker's heartbeat finds the request in Postgres instead.
        log.warning("cancel.publish_failed", job_id=str(job_id), error=repr(exc))


async def _publish(state: ServerState, events: list[asyncpg.Record]) -> None:
    if not events:
        return
    try:
        await queue.publish_events(state.redis, state.names, [event_json(e) for e in events])
    except (RedisError, OSError) as exc:
        log.warning("publish.failed", events=len(events), error=repr(exc))


routes = [
    Route("/batches", create_batch, methods=["POST"]),
    Route("/batches", list_batches, methods=["GET"]),
    Route("/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    Route("/batches/{batch_id}/retry", retry_batch, methods=["POST"]),
]
