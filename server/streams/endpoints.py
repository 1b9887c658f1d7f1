"""`/jobs/{id}/events`: a job's events as a live SSE stream, or its history as JSON."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from tidings.core import serialization
from tidings.core.db import events
from tidings.core.errors import Unprocessable
from tidings.core.events import event_json
from tidings.core.job_lookup import load_job
from tidings.server.auth import authority_of
from tidings.server.responses import JSONResponse
from tidings.server.state import ServerState
from tidings.server.streams.authority import Authority
from tidings.server.streams.follow import follow_all, replay_then_follow
from tidings.server.streams.hub import Notice, Subscription
from tidings.server.streams.response import StreamResponse


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


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


async def job_events(
    request: Request, state: ServerState, tenant: str, raw_id: str
) -> Response | StreamResponse:
    """GET /jobs/{id}/events: SSE (subscribe, replay, follow) or, for JSON clients, history."""
    job = await load_job(state.pool, raw_id, tenant)
    after = resume_after(request)
    if after > job["seq"]:
        # No client can have seen an event that does not exist yet.
        raise Unprocessable(
            f"no event {after} yet: the job's last event is {job['seq']}",
            {"field": "Last-Event-ID", "reason": "beyond the job's last event"},
            code="invalid_query",
        )
    job_id = job["id"]  # the stream keeps only the id, not the whole job row
    if wants_json(request):
        rows = await events.events_after(state.pool, job_id=job_id, after=after)
        return JSONResponse({"events": [event_json(row) for row in rows]})

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
