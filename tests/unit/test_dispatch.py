"""The dispatcher sends HTTP requests on the stream paths past Starlette, and nothing else;
mounted in a host app, the paths below its mount point, and the host runs its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from tidings.server.streams.dispatch import Dispatcher


class Recorder:
    """An ASGI app that remembers the paths (or scope types) it was called with."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope.get("path", scope["type"]))


async def nothing() -> dict[str, str]:
    raise AssertionError("not read")


async def ignore(message: object) -> None:
    raise AssertionError("not sent")


@pytest.mark.parametrize(
    ("scope", "to_streams"),
    [
        ({"type": "http", "path": "/events"}, True),
        ({"type": "http", "path": "/jobs/123/events"}, True),
        ({"type": "http", "path": "/jobs/123/events/"}, False),
        ({"type": "http", "path": "/jobs/123"}, False),
        ({"type": "http", "path": "/jobs/1/2/events"}, False),
        ({"type": "http", "path": "/"}, False),
        ({"type": "websocket", "path": "/events"}, False),
        # Mounted at /tidings: the path still starts with the mount point (ASGI).
        ({"type": "http", "path": "/tidings/events", "root_path": "/tidings"}, True),
        ({"type": "http", "path": "/tidings/jobs/123/events", "root_path": "/tidings"}, True),
        ({"type": "http", "path": "/tidings/jobs/123", "root_path": "/tidings"}, False),
        ({"type": "http", "path": "/tidingsx/events", "root_path": "/tidings"}, False),
        ({"type": "lifespan"}, False),
    ],
)
async def test_only_http_requests_on_the_stream_paths_skip_starlette(
    scope: Scope, to_streams: bool
) -> None:
    app, streams = Recorder(), Recorder()
    dispatcher = Dispatcher(app, streams)  # type: ignore[arg-type]
    await dispatcher(scope, nothing, ignore)
    taken, skipped = (streams, app) if to_streams else (app, streams)
    assert taken.seen == [scope.get("path", scope["type"])] and skipped.seen == []


def test_its_state_is_the_starlette_apps() -> None:
    app = Starlette()
    app.state.tidings = "ready"
    assert Dispatcher(app, Recorder()).state.tidings == "ready"


async def test_its_lifespan_is_the_starlette_apps_for_a_host_to_run() -> None:
    stopped: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.tidings = "ready"
        yield
        stopped.append(True)

    dispatcher = Dispatcher(Starlette(lifespan=lifespan), Recorder())
    host = Starlette()
    async with dispatcher.lifespan(host):
        assert dispatcher.state.tidings == "ready" and not stopped
    assert stopped == [True]
    assert not hasattr(host.state, "tidings")  # the host's own state is left alone
