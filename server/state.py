"""The typed state a server process keeps on `app.state` for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from arq.connections import ArqRedis
from starlette.requests import Request

from tidings.core.queue import Names
from tidings.core.settings import Settings
from tidings.core.submission import Submitter
from tidings.server.key_lookup import KeyLookup
from tidings.server.limits import Lockouts, RateLimiter, StreamLimits
from tidings.server.metrics import ServerMetrics
from tidings.server.streams.authority import Authorities
from tidings.server.streams.hub import Hub
from tidings.server.submission import SubmitBatcher
from tidings.server.tokens import StreamTokens
from tidings.server.validation import ArgsValidators


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


def state_of(request: Request) -> ServerState:
    """The server state of the app handling `request`."""
    state: ServerState = request.app.state.tidings
    return state
