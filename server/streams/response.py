"""SSE responses that cost little per open stream: thousands stay open on one process.

sse-starlette's EventSourceResponse runs a task group per stream (sender, pinger,
disconnect listener, exit watcher): with their cancel scopes, events and locks, about
24 KiB for every open stream. Here the request's own task sends the events, framed by
sse-starlette's `ServerSentEvent`; keep-alives, shutdown and the client's departure reach
it through the hub's subscription, which every stream already waits on (one timer and one
shutdown hook per process, and one small task per stream waiting on `receive()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from tidings.server.middleware import context_headers
from tidings.server.streams.hub import Notice, Subscription

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
    """An SSE response that gives back its stream slot and subscription however it ends.

    It sends what `events` yields, as `encode` frames it (None: nothing to send), and
    a keep-alive comment for each `Notice.KEEPALIVE`. `events` ends when its
    subscription closes: when the hub closes it for a shutdown, and when the client
    leaves. Its body ends cleanly (an empty last chunk) after a job's last event and on
    shutdown, so that a client reconnects with Last-Event-ID.
    """

    __slots__ = ("_encode", "_events", "_release", "_subscription")

    status_code = 200

    def __init__(
        self,
        subscription: Subscription,
        events: AsyncGenerator[dict[str, Any] | Notice, None],
        encode: Callable[[dict[str, Any] | Notice], ServerSentEvent | None],
        *,
        release: Callable[[], None],
    ) -> None:
        self._subscription = subscription
        self._events = events
        self._encode = encode
        self._release = release

    async def stream(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Send the response, with the headers every response carries, until it ends."""
        with self._subscription:
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*HEADERS, *context_headers(request_id)],
                    }
                )
                # HEAD gets the headers only, never a stream.
                if scope["method"] != "HEAD" and await request_read(receive):
                    async with aclosing(self._events) as events:
                        listener = asyncio.ensure_future(client_left(receive))
                        listener.add_done_callback(self._subscription.end)
                        try:
                            async for item in events:
                                await self._send(send, item)
                                del item  # a stream should not hold its last event while waiting
                        finally:
                            listener.cancel()
                await send(END_OF_BODY)
            finally:
                self._release()

    async def _send(self, send: Send, item: dict[str, Any] | Notice) -> None:
        if item is Notice.KEEPALIVE:
            await send(KEEPALIVE)
        elif (event := self._encode(item)) is not None:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})


async def client_left(receive: Receive) -> None:
    """Return once the client has left. After the request, `receive` should answer only
    `http.disconnect`; anything else it answers (an empty body message) is read past, so
    that only a real disconnect ends the stream."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def request_read(receive: Receive) -> bool:
    """Read the request to its end; False if the client left first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body", False):
            return True
