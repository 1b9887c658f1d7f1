"""The app uvicorn serves: SSE stream requests go past Starlette's stack, the rest through it.

An open stream holds every frame between uvicorn and its response for as long as it
stays open; thousands stay open on one process. `StreamRoutes` serves the stream paths in
one frame; everything else (and the lifespan) is the Starlette app's.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from tidings.server.auth import stream_subject


class Dispatcher:
    """Sends HTTP requests on the stream paths to `streams`, everything else to `app`."""

    def __init__(self, app: Starlette, streams: ASGIApp) -> None:
        self.app = app
        self._streams = streams

    @property
    def state(self) -> State:
        """The Starlette app's state, which its lifespan fills."""
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and stream_subject(scope["path"]) is not None:
            await self._streams(scope, receive, send)
        else:
            await self.app(scope, receive, send)
