"""The typed state a server process keeps on `app.state` for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis
from starlette.requests import Request

from core.queue import Names
from core.settings import Settings
from core.submission import Submitter
from core.submit_batcher import SubmitBatcher
from server.hub import Hub
from server.key_lookup import KeyLookup
from server.limits import RateLimiter, StreamLimits
from server.metrics import ServerMetrics
from server.tokens import StreamTokens
from server.validation import ArgsValidators


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


def state_of(request: Request) -> ServerState:
    """The server state of the app handling `request`."""
    state: ServerState = request.app.state.tidings
    return state
