"""`/jobs`: submit (one or a batch), read, cancel and retry jobs (the list: `job_list`)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core import queue
from tidings.core.db import jobs, workers
from tidings.core.errors import Conflict, NotFound
from tidings.core.events import event_json
from tidings.core.fair_waits import limit_wait
from tidings.core.job_lookup import load_job, parse_job_id
from tidings.core.job_request import batch_requests, job_request
from tidings.core.keyed_submission import submit_keyed
from tidings.core.model import RETRYABLE_STATUSES, Status, job_json, waiting_eta_s
from tidings.core.shapes import Job
from tidings.core.submission import Submitted
from tidings.server.auth import authority_of, tenant_of
from tidings.server.body import read_json_object
from tidings.server.mount import app_url
from tidings.server.responses import JSONResponse
from tidings.server.state import ServerState, state_of

log = structlog.get_logger("tidings.server")


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
    # A job with dependencies is linked in a transaction of its own, not group-committed.
    submitter = state.submitter if job.depends_on else state.batcher
    if job.keys.acts_at_submit:  # its key's strategy decides, under the key's lock
        submitted: Submitted | None = await submit_keyed(state.submitter, job)
    else:
        submitted = await submitter.submit(job)
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
    if row["status"] == Status.WAITING:
        waiting_reason = f"waiting for {row['pending_dependencies']} job(s) to end"
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
        else:  # its concurrency key or rate limit may hold it back
            held = await limit_wait(state.pool, row)
            waiting_reason = held.reason
            if held.starts_in_s is not None:  # its bucket says when it can start
                eta_s = max(eta_s or 0.0, round(held.starts_in_s + (run_s or 0.0), 3))
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
    if event is None and current["status"] in RETRYABLE_STATUSES:
        raise Conflict(
            "a dependency of this job ended without success; retry it first",
            {"status": current["status"], "depends_on": [str(d) for d in current["depends_on"]]},
            code="dependency_failed",
        )
    if event is None:
        raise Conflict(
            f"job is {current['status']}; only failed or cancelled jobs can be retried",
            {"status": current["status"]},
            code="illegal_transition",
        )
    if event["status"] == Status.QUEUED:  # a waiting one gets its token on release
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


routes = [
    Route("/jobs", submit_job, methods=["POST"]),
    Route("/jobs/batch", submit_batch, methods=["POST"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/jobs/{job_id}/retry", retry_job, methods=["POST"]),
]
