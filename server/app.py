"""`create_app(settings)`: the Starlette app, its routes and its lifespan-managed pools."""

from __future__ import annotations

import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware

from tidings.core import queue
from tidings.core.db.migrate import migrate_url
from tidings.core.db.pool import create_pool
from tidings.core.embedded import running_embedded, start_embedded
from tidings.core.logging import configure_logging
from tidings.core.service import Service
from tidings.core.settings import Settings, settings_or_exit
from tidings.core.submission import Submitter
from tidings.core.validation import ArgsValidators
from tidings.server import dashboard
from tidings.server.alerts import AlertPolicy, FailureAlerts
from tidings.server.auth import Authenticate
from tidings.server.connections import (
    ConnectionGuard,
    connection_cap,
    guarded_protocol,
    raise_fd_limit,
)
from tidings.server.errors import EXCEPTION_HANDLERS
from tidings.server.key_lookup import KeyLookup
from tidings.server.limits import RateLimiter, StreamLimits
from tidings.server.metrics import ServerMetrics
from tidings.server.middleware import RequestContext
from tidings.server.routes import batches, bulk, docs, health, job_list, jobs, stats, tasks, workers
from tidings.server.routes import metrics as metrics_routes
from tidings.server.state import ServerState
from tidings.server.streams.authority import Authorities, recheck
from tidings.server.streams.dispatch import Dispatcher
from tidings.server.streams.hub import Hub
from tidings.server.streams.keepalive import KeepAlive
from tidings.server.streams.routes import StreamRoutes
from tidings.server.submission import SubmitBatcher
from tidings.server.tokens import StreamTokens

log = structlog.get_logger("tidings.server")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def notify_all(observers: list[Callable[[dict[str, Any]], None]], event: dict[str, Any]) -> None:
    """Hand one event from the feed to each observer."""
    for observe in observers:
        observe(event)


def stream_secret(settings: Settings) -> bytes:
    """The key stream tokens are signed with; random (this process only) when unset."""
    if settings.secret:
        return settings.secret.encode()
    if settings.auth == "keys":
        log.warning(
            "secret.random",
            message="TIDINGS_SECRET is unset: stream tokens work only on this server process",
        )
    return secrets.token_bytes(32)


def alert_policy(settings: Settings) -> AlertPolicy:
    """The failure-ratio webhook policy from the settings."""
    return AlertPolicy(
        webhook_url=settings.alert_webhook,
        failure_ratio=settings.alert_failure_ratio,
        min_jobs=settings.alert_min_jobs,
        window_s=settings.alert_window_s,
        cooldown_s=settings.alert_cooldown_s,
    )


def create_app(
    settings: Settings | None = None, connections: ConnectionGuard | None = None
) -> Dispatcher:
    """The tidings app for `settings` (default: read from the `TIDINGS_*` environment).

    The SSE stream paths are served by `StreamRoutes`, the rest by a Starlette app (which
    also runs the lifespan and keeps `state`): see `server/streams/dispatch.py`. Served by
    itself, uvicorn runs the lifespan; mounted in a host app, the host runs it through
    `Dispatcher.lifespan`. An unset database or Redis URL is an embedded server for the
    lifespan's duration. The `connections` guard of the serving process, if any, adds its
    series to `/metrics`.
    """
    configured = Settings.from_env() if settings is None else settings
    metrics = ServerMetrics()
    if connections is not None:
        metrics.registry.register(connections)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # `settings` here: the configured ones with any unset URL filled in.
        async with running_embedded(configured) as settings, AsyncExitStack() as stack:
            await migrate_url(settings.database_url)
            pool = await create_pool(
                settings.database_url, max_size=20, connect_timeout_s=settings.db_timeout_s
            )
            stack.push_async_callback(pool.close)
            redis = await queue.connect(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            names = queue.Names(settings.namespace)
            observers: list[Callable[[dict[str, Any]], None]] = [metrics.observe_event]
            if settings.alert_webhook:
                alerts = FailureAlerts(alert_policy(settings), redis, settings.namespace)
                stack.push_async_callback(alerts.close)
                observers.append(alerts.observe)
            authorities = Authorities()
            hub = Hub(
                settings.redis_url,
                names.events_channel,
                queue_size=settings.stream_queue_size,
                on_event=lambda event: notify_all(observers, event),
                on_disconnect=metrics.backend_errors.labels("redis").inc,
                also={names.revoked_channel: authorities.revoked},
            )
            hub.start()
            stack.push_async_callback(hub.stop)
            rechecking = Service("tidings-revocation-check", lambda: recheck(authorities, pool))
            rechecking.start()
            stack.push_async_callback(rechecking.stop)
            keepalive = KeepAlive(hub, settings.keepalive_s)
            keepalive.start()
            stack.push_async_callback(keepalive.stop)
            submitter = Submitter(pool, redis, names, on_created=metrics.count_submitted)
            batcher = SubmitBatcher(submitter, pool)
            batcher.start()
            stack.push_async_callback(batcher.close)
            key_lookup = KeyLookup(pool)
            key_lookup.start()
            stack.push_async_callback(key_lookup.close)
            rate_limiter = RateLimiter(
                redis, settings.namespace, settings.rate_limit_per_s, settings.rate_limit_burst
            )
            rate_limiter.start()
            stack.push_async_callback(rate_limiter.close)
            app.state.tidings = ServerState(
                settings=settings,
                pool=pool,
                redis=redis,
                names=names,
                hub=hub,
                validators=ArgsValidators(),
                submitter=submitter,
                batcher=batcher,
                key_lookup=key_lookup,
                metrics=metrics,
                tokens=StreamTokens(stream_secret(settings), settings.stream_token_ttl_s),
                streams=StreamLimits(settings.max_streams, settings.max_streams_per_tenant),
                rate_limiter=rate_limiter,
                authorities=authorities,
            )
            if settings.auth == "off":
                log.warning(
                    "auth.off",
                    message="TIDINGS_AUTH=off: every request acts as tenant 'default'; "
                    "loopback only, never in production",
                )
            log.info("server.started", host=settings.host, port=settings.port)
            yield

    app = Starlette(
        routes=[
            *jobs.routes,
            *job_list.routes,
            *bulk.routes,
            *stats.routes,
            *batches.routes,
            *tasks.routes,
            *workers.routes,
            *health.routes,
            *metrics_routes.routes,
            *docs.routes,
            *dashboard.routes,
        ],
        middleware=[Middleware(RequestContext, metrics=metrics), Middleware(Authenticate)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    return Dispatcher(app, StreamRoutes(app, metrics))


def close_streams(app: Dispatcher) -> None:
    """End the app's open SSE streams cleanly (nothing to do before its lifespan started)."""
    state: ServerState | None = getattr(app.state, "tidings", None)
    if state is not None:
        state.hub.close_streams()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM end it with exit status 0, and that its
    SSE streams are closed when it shuts down.

    uvicorn re-raises the stop signal after shutting down, so a supervisor would see the
    process as killed; a drained, orderly stop is a success here. uvicorn waits for every
    open response before it stops, and an SSE stream on a running job does not end by
    itself: `before_shutdown` ends them (cleanly, so clients reconnect elsewhere).
    """

    def __init__(
        self, config: uvicorn.Config, before_shutdown: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the port is bound: clients can connect from now on
            log.info("server.ready", host=self.config.host, port=self.config.port)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def connection_guard(settings: Settings) -> ConnectionGuard:
    """The connection caps and header deadline of this process (its fd limit raised)."""
    return ConnectionGuard(
        max_open=connection_cap(settings.max_connections, raise_fd_limit()),
        max_per_address=settings.max_connections_per_address,
        header_timeout_s=settings.header_timeout_s,
    )


def server_for(settings: Settings) -> GracefulServer:
    """uvicorn serving the tidings app on `settings.host:port`, behind the connection guard."""
    guard = connection_guard(settings)
    app = create_app(settings, guard)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(guard),
        timeout_keep_alive=settings.idle_timeout_s,
        log_config=None,
        access_log=False,
        server_header=False,  # names the software to every client; says nothing useful
    )
    return GracefulServer(config, before_shutdown=lambda: close_streams(app))


def main(environ: dict[str, str] | None = None) -> None:
    """Entry point of `python -m server`: serve until interrupted."""
    settings = settings_or_exit(environ)
    configure_logging(settings)
    settings, embedded = start_embedded(settings)
    try:
        server_for(settings).run()
    finally:
        embedded.close()
