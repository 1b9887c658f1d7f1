"""`/jobs/{id}/events`: a job's events as a live SSE stream, or its history as JSON."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import asyncpg
from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from tidings.core import serialization
from tidings.core.db import events
from tidings.core.errors import Unprocessable
from tidings.core.job_lookup import load_job
from tidings.core.shapes import Event, History
from tidings.server.auth import authority_of
from tidings.server.responses import JSONResponse
from tidings.server.state import ServerState
from tidings.server.streams.authority import Authority
from tidings.server.streams.follow import follow_all, replay_then_follow
from tidings.server.streams.hub import Notice, Subscription
from tidings.server.streams.response import StreamResponse

HISTORY_PAGE = 1_000
MAX_HISTORY_PAGE = 5_000
MAX_SEQ = 999_999_999


def held_stream(
    state: ServerState,
    tenant: str,
    authority: Authority,
    job_id: str | None,
    follow: Callable[[Subscription], AsyncGenerator[dict[str, Any] | Notice, None]],
    encode: Callable[[dict[str, Any] | Notice], ServerSentEvent | None],
) -> StreamResponse:
    """An SSE response holding one of the tenant's stream slots (429/503 when none is left)
    and a subscription to `job_id`'s events (every job's with None), which `follow` reads.
    It ends when the credential it was opened with is revoked or expires.
    """
    release_slot = state.streams.acquire(tenant)
    subscription = state.hub.subscribe(job_id)
    release_authority = state.authorities.hold(authority, subscription)

    def release() -> None:
        release_authority()
        release_slot()

    return StreamResponse(subscription, follow(subscription), encode, release=release)


def resume_after(request: Request) -> int:
    """The seq a client has seen: `Last-Event-ID` header, else `?after=`, else 0.

    Both are checked when both are sent: a bad `after` is a 422 even though the header wins.
    """
    seen: list[int] = []
    for field, raw in (
        ("Last-Event-ID", request.headers.get("last-event-id")),
        ("after", request.query_params.get("after")),
    ):
        if raw is None:
            continue
        # isascii: str.isdigit() also accepts digits such as '²' that int() rejects.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
            raise Unprocessable(
                f"{field} must be a non-negative event seq",
                {"field": field, "reason": f"got {raw!r}"},
                code="invalid_query",
            )
        seen.append(int(raw))
    return seen[0] if seen else 0


def page_bound(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter of the history within [low, high]; 422 otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not low <= int(raw) <= high:
        raise Unprocessable(
            f"{name} must be a whole number from {low} to {high}",
            {"field": f"query.{name}", "reason": f"got {raw!r}"},
            code="invalid_query",
        )
    return int(raw)


def page_of(request: Request) -> tuple[int, int | None]:
    """The history page a request asks for: `limit`, and `before` (None: after `after`).
    Checked for every request, streams too: a bad value is a 422 whatever the answer."""
    limit = page_bound(request, "limit", HISTORY_PAGE, 1, MAX_HISTORY_PAGE)
    if "before" not in request.query_params:
        return limit, None
    return limit, page_bound(request, "before", 0, 1, MAX_SEQ)


async def history_page(
    state: ServerState, job: asyncpg.Record, after: int, limit: int, before: int | None
) -> History:
    """A page of the job's events as JSON: the `limit` after `after`, or with `before` the
    `limit` just below it (the dashboard reads the latest page, then older on demand)."""
    if before is not None:
        found = await events.page_before(state.pool, job_id=job["id"], before=before, limit=limit)
    else:
        found = await events.page_after(state.pool, job_id=job["id"], after=after, limit=limit)
    first = found[0]["seq"] if found else None
    last = found[-1]["seq"] if found else after
    return {
        "events": cast(list[Event], found),
        "next_after": last if last < job["seq"] else None,
        "previous_before": first if first is not None and first > 1 else None,
    }


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


async def job_events(
    request: Request, state: ServerState, tenant: str, raw_id: str
) -> Response | StreamResponse:
    """GET /jobs/{id}/events: SSE (subscribe, replay, follow) or, for JSON clients, history."""
    job = await load_job(state.pool, raw_id, tenant)
    after = resume_after(request)
    limit, before = page_of(request)
    if after > job["seq"]:
        # No client can have seen an event that does not exist yet.
        raise Unprocessable(
            f"no event {after} yet: the job's last event is {job['seq']}",
            {"field": "Last-Event-ID", "reason": "beyond the job's last event"},
            code="invalid_query",
        )
    job_id = job["id"]  # the stream keeps only the id, not the whole job row
    if wants_json(request):
        return JSONResponse(await history_page(state, job, after, limit, before))

    return held_stream(
        state,
        tenant,
        authority_of(request.scope),
        str(job_id),
        lambda subscription: replay_then_follow(state.pool, subscription, job_id, after),
        encode_job_event,
    )


def encode_job_event(event: dict[str, Any] | Notice) -> ServerSentEvent | None:
    """A job's event as SSE: its seq is the id a client resumes from."""
    if isinstance(event, Notice):
        return None
    return ServerSentEvent(
        data=serialization.dumps_str(event), event=event["kind"], id=str(event["seq"])
    )


async def all_events(state: ServerState, tenant: str, authority: Authority) -> StreamResponse:
    """GET /events: live events of every job of the caller's tenant, for dashboards.

    There is no replay here (events have no order across jobs to resume from): after a
    `resync` event, or a reconnect, a client re-reads `GET /jobs` and follows on.
    """

    def encode(event: dict[str, Any] | Notice) -> ServerSentEvent | None:
        if event is Notice.RESYNC:
            return ServerSentEvent(data="{}", event="resync")
        if isinstance(event, dict) and event.get("tenant") == tenant:
            return ServerSentEvent(data=serialization.dumps_str(event), event=event["kind"])
        return None

    return held_stream(state, tenant, authority, None, follow_all, encode)
