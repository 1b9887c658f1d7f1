"""The app uvicorn serves, or a host app mounts: SSE stream requests go past Starlette's
stack, the rest through it.

An open stream holds every frame between uvicorn and its response for as long as it
stays open; thousands stay open on one process. `StreamRoutes` serves the stream paths in
one frame; everything else (and the lifespan) is the Starlette app's. Mounted in a host
app, the paths matched are the ones below the mount point, and the host runs the
lifespan (a mounted app's own never runs): `lifespan` is what it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from tidings.server.auth import stream_subject
from tidings.server.mount import route_path


class Dispatcher:
    """Sends HTTP requests on the stream paths to `streams`, everything else to `app`."""

    def __init__(self, app: Starlette, streams: ASGIApp) -> None:
        self.app = app
        self._streams = streams

    @property
    def state(self) -> State:
        """The Starlette app's state, which its lifespan fills."""
        return self.app.state

    @asynccontextmanager
    async def lifespan(self, host: object = None) -> AsyncIterator[None]:
        """The Starlette app's lifespan, for a `host` app that mounts this one to run:
        `FastAPI(lifespan=tidings_app.lifespan)`, or `async with tidings_app.lifespan(app):`
        around the `yield` of the host's own lifespan. It starts tidings (pools, the hub,
        embedded servers when no URL is set) and stops it; `host` itself is left alone.
        """
        async with self.app.router.lifespan_context(self.app):
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and stream_subject(route_path(scope)) is not None:
            await self._streams(scope, receive, send)
        else:
            await self.app(scope, receive, send)
