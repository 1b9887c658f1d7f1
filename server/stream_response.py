"""SSE responses that cost little per open stream: thousands stay open on one process.

sse-starlette's EventSourceResponse runs a task group per stream (sender, pinger,
disconnect listener, exit watcher): with their cancel scopes, events and locks, about
24 KiB for every open stream. Here the request's own task sends the events, framed by
sse-starlette's `ServerSentEvent`; keep-alives and shutdown reach it through the hub's
subscription, which every stream already waits on (one timer and one shutdown hook per
process); and one small task waits for the client to leave, then cuts the stream short.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.hub import Notice

# What EventSourceResponse sends, built once for every stream rather than per response.
HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
)
END_OF_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}

KEEPALIVE: Message = {
    "type": "http.response.body",
    "body": ServerSentEvent(comment="ping").encode(),
    "more_body": True,
}


class StreamResponse:
    """An SSE response that gives back its stream slot however it ends.

    It sends what `events` yields, as `encode` frames it (None: nothing to send), and
    a keep-alive comment for each `Notice.KEEPALIVE`. Its body ends cleanly (an empty
    last chunk) after a job's last event and when the hub closes the stream for a
    shutdown, so that a client reconnects with Last-Event-ID.
    """

    __slots__ = ("_encode", "_events", "_release")

    def __init__(
        self,
        events: AsyncGenerator[dict[str, Any] | Notice, None],
        encode: Callable[[dict[str, Any] | Notice], ServerSentEvent | None],
        *,
        release: Callable[[], None],
    ) -> None:
        self._events = events
        self._encode = encode
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        # A cancel scope from the standard library: expiring it cancels this task, and
        # leaving it turns that cancellation (and only that one) into TimeoutError.
        cut_short = asyncio.timeout(None)
        streaming = True

        def cut(_: asyncio.Task[None]) -> None:
            if streaming:
                cut_short.reschedule(loop.time())

        try:
            await send({"type": "http.response.start", "status": 200, "headers": list(HEADERS)})
            if scope["method"] != "HEAD":  # HEAD gets the headers only, never a stream
                async with cut_short, aclosing(self._events) as events:
                    gone = loop.create_task(client_gone(receive))
                    gone.add_done_callback(cut)
                    try:
                        async for item in events:
                            await self._send(send, item)
                            del item  # a stream should not hold its last event while it waits
                    finally:
                        streaming = False
                        gone.cancel()
            await send(END_OF_BODY)
        except TimeoutError:
            if not cut_short.expired():
                raise
        finally:
            self._release()

    async def _send(self, send: Send, item: dict[str, Any] | Notice) -> None:
        if item is Notice.KEEPALIVE:
            await send(KEEPALIVE)
        elif (event := self._encode(item)) is not None:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})


async def client_gone(receive: Receive) -> None:
    """Return once the client has disconnected (after the request, receive waits for it)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class StreamEndpoint:
    """A route endpoint for an SSE handler, run as plain ASGI.

    Starlette wraps a `handler(request)` endpoint in two more coroutines and a
    per-route exception wrapper, all held for as long as the stream is open. Without
    them, errors raised before the response starts still become JSON errors: the app's
    exception middleware handles them for every route.
    """

    def __init__(self, handler: Callable[[Request], Awaitable[ASGIApp]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handler(Request(scope, receive))
        await response(scope, receive, send)
