"""`/jobs/{id}/events`: a job's events as a live SSE stream, or its history as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from core import serialization
from core.db import events
from core.errors import Unprocessable
from core.model import event_json
from server.auth import tenant_of
from server.responses import JSONResponse
from server.routes.jobs import load_job
from server.state import state_of
from server.streams import replay_then_follow


class HeldStream(EventSourceResponse):
    """An SSE response that gives back its stream slot however it ends.

    When the server shuts down, sse-starlette cancels the stream without finishing the
    response body: the client sees a cut connection and uvicorn logs an incomplete
    response. Here the body is finished instead, so the stream ends as cleanly as after
    a job's last event, and the client reconnects with Last-Event-ID.
    """

    def __init__(self, content: Any, *, release: Callable[[], None], **kwargs: Any) -> None:
        self._shutting_down = anyio.Event()
        super().__init__(content, shutdown_event=self._shutting_down, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await super().__call__(scope, receive, send_noting_start)
            if started and self.active and self._shutting_down.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._release()


def held_stream(request: Request, events: AsyncIterator[ServerSentEvent]) -> HeldStream:
    """An SSE response holding one of the caller's stream slots (429/503 when none is left)."""
    state = state_of(request)
    return HeldStream(
        events,
        release=state.streams.acquire(tenant_of(request)),
        ping=state.settings.keepalive_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


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


async def job_events(request: Request) -> Response:
    """GET /jobs/{id}/events: SSE (subscribe, replay, follow) or, for JSON clients, history."""
    state = state_of(request)
    tenant = tenant_of(request)
    job = await load_job(state, request.path_params["job_id"], tenant)
    after = resume_after(request)
    if after > job["seq"]:
        # No client can have seen an event that does not exist yet.
        raise Unprocessable(
            f"no event {after} yet: the job's last event is {job['seq']}",
            {"field": "Last-Event-ID", "reason": "beyond the job's last event"},
            code="invalid_query",
        )
    if wants_json(request):
        rows = await events.events_after(state.pool, job["id"], after)
        return JSONResponse({"events": [event_json(row) for row in rows]})

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for event in replay_then_follow(state.pool, state.hub, job["id"], after):
            yield ServerSentEvent(
                data=serialization.dumps_str(event), event=event["kind"], id=str(event["seq"])
            )

    return held_stream(request, stream())


async def all_events(request: Request) -> Response:
    """GET /events: live events of every job of the caller's tenant, for dashboards.

    There is no replay here (events have no order across jobs to resume from): after a
    `resync` event, or a reconnect, a client re-reads `GET /jobs` and follows on.
    """
    state = state_of(request)
    tenant = tenant_of(request)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        with state.hub.subscribe(None) as subscription:
            while True:
                event = await subscription.next()
                if event is None:
                    yield ServerSentEvent(data="{}", event="resync")
                elif event.get("tenant") == tenant:
                    yield ServerSentEvent(data=serialization.dumps_str(event), event=event["kind"])

    return held_stream(request, stream())


routes = [
    Route("/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/events", all_events, methods=["GET"]),
]
