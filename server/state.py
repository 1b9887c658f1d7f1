"""The typed state a server process keeps on `app.state` for its lifetime, which its
lifespan puts there (a request before then is a 503 `not_started`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from arq.connections import ArqRedis
from starlette.datastructures import State
from starlette.requests import Request

from tidings.core.errors import TidingsError
from tidings.core.queue import Names
from tidings.core.settings import Settings
from tidings.core.submission import Submitter
from tidings.core.validation import ArgsValidators
from tidings.server.key_lookup import KeyLookup
from tidings.server.limits import Lockouts, RateLimiter, StreamLimits
from tidings.server.metrics import ServerMetrics
from tidings.server.streams.authority import Authorities
from tidings.server.streams.hub import Hub
from tidings.server.submission import SubmitBatcher
from tidings.server.tokens import StreamTokens


@dataclass
class ServerState:
    settings: Settings
    pool: asyncpg.Pool
    redis: ArqRedis
    names: Names
    hub: Hub
    validators: ArgsValidators
    submitter: Submitter
    batcher: SubmitBatcher
    key_lookup: KeyLookup
    metrics: ServerMetrics
    tokens: StreamTokens
    streams: StreamLimits
    rate_limiter: RateLimiter
    lockouts: Lockouts = field(default_factory=Lockouts)
    authorities: Authorities = field(default_factory=Authorities)


class NotStarted(TidingsError):
    """A request reached the app before its lifespan ran: it was mounted in a host app
    whose lifespan does not run tidings' own (a mounted app's lifespan never runs by
    itself)."""

    status, code = 503, "not_started"


NOT_STARTED_MESSAGE = (
    "tidings is mounted but was never started: its lifespan has not run. Pass "
    "lifespan=tidings_app.lifespan to your FastAPI or Starlette app, or, in a lifespan of "
    "your own, wrap its yield in `async with tidings_app.lifespan(app):`"
)


def started_state(state: State) -> ServerState:
    """The server state the app's lifespan put on `state`; `NotStarted` (503) before it."""
    server_state: ServerState | None = getattr(state, "tidings", None)
    if server_state is None:
        raise NotStarted(NOT_STARTED_MESSAGE)
    return server_state


def state_of(request: Request) -> ServerState:
    """The server state of the app handling `request`."""
    state: ServerState = request.app.state.tidings
    return state
