"""The SSE stream paths, `/jobs/{id}/events` and `/events`, served outside Starlette's stack.

Every open stream keeps its request's frames alive for as long as it stays open. Through
Starlette those were five middleware and routing frames with their send wrappers, plus
tidings' request-context and auth middlewares: ~5 KiB a stream. Here one frame per
request does what those do for the rest of the API (request id, security headers,
metrics and the `http.request` line, the caller's tenant), and errors raised before the
stream starts are answered by the app's own handlers (`server/errors.py`), so they are
the same JSON bodies and headers as everywhere else.
"""

from __future__ import annotations

import time

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tidings.server.auth import (
    ALL_EVENTS_PATH,
    BATCH_STREAM_PATH,
    authenticate,
    authority_of,
    stream_subject,
)
from tidings.server.errors import response_for_error
from tidings.server.metrics import ServerMetrics
from tidings.server.middleware import context_headers, record_request, request_id_of
from tidings.server.mount import route_path
from tidings.server.state import started_state
from tidings.server.streams.batch import batch_stream
from tidings.server.streams.endpoints import all_events, job_events
from tidings.server.streams.response import StreamResponse

JOB_EVENTS_ROUTE = "/jobs/{job_id}/events"
BATCH_EVENTS_ROUTE = "/batches/{batch_id}/events"
STREAM_METHODS = ("GET", "HEAD")


class StreamRoutes:
    """Serves the stream paths (any method: others are a 405, as Starlette answers them)."""

    def __init__(self, app: Starlette, metrics: ServerMetrics) -> None:
        self._app = app  # its state, and what the error handlers see as `request.app`
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = request_id_of(scope)
        started = time.perf_counter()
        # bind/reset rather than bound_contextvars(): see `RequestContext`.
        context = structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        path = route_path(scope)  # below the mount point, as the dispatcher matched it
        try:
            response = await self._respond(scope, receive, path)
            status = response.status_code
            if isinstance(response, StreamResponse):
                await response.stream(scope, receive, send, request_id)
            else:
                response.raw_headers.extend(context_headers(request_id))
                await response(scope, receive, send)
        finally:
            route = JOB_EVENTS_ROUTE
            if path == ALL_EVENTS_PATH:
                route = ALL_EVENTS_PATH
            elif BATCH_STREAM_PATH.match(path):
                route = BATCH_EVENTS_ROUTE
            record_request(self._metrics, scope, route, status, started)
            structlog.contextvars.reset_contextvars(**context)

    async def _respond(
        self, scope: Scope, receive: Receive, path: str
    ) -> Response | StreamResponse:
        """The stream on `path`, a JSON history, or the error the API answers."""
        request = Request(scope, receive)
        try:
            state = started_state(self._app.state)
            tenant = await authenticate(state, scope)
            if scope["method"] not in STREAM_METHODS:
                raise HTTPException(405, headers={"Allow": ", ".join(STREAM_METHODS)})
            assert tenant is not None, "stream paths are never public"
            if path == ALL_EVENTS_PATH:
                return await all_events(state, tenant, authority_of(scope))
            batch = BATCH_STREAM_PATH.match(path)
            if batch:
                return await batch_stream(request, state, tenant, batch.group(1))
            raw_id = stream_subject(path)
            assert raw_id is not None, "the dispatcher sends only stream paths here"
            return await job_events(request, state, tenant, raw_id)
        except Exception as exc:
            scope["app"] = self._app
            return await response_for_error(request, exc)
