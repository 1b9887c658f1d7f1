"""`create_app(settings)`: the Starlette app, its routes and its lifespan-managed pools."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager

import structlog
import uvicorn
from starlette.applications import Starlette

from core import queue
from core.db.pool import create_pool
from core.embedded import start_embedded
from core.logging import configure_logging
from core.migrate import migrate_url
from core.settings import Settings
from core.submission import Submitter
from server.errors import EXCEPTION_HANDLERS
from server.hub import Hub
from server.routes import events, health, jobs, registry
from server.state import ServerState
from server.validation import ArgsValidators

log = structlog.get_logger("tidings.server")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def create_app(settings: Settings) -> Starlette:
    """The tidings app for `settings` (whose database and Redis URLs must be set)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await migrate_url(settings.database_url, settings.migrations_dir)
            pool = await create_pool(
                settings.database_url, max_size=20, connect_timeout_s=settings.db_timeout_s
            )
            stack.push_async_callback(pool.close)
            redis = await queue.connect(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            names = queue.Names(settings.namespace)
            hub = Hub(
                settings.redis_url, names.events_channel, queue_size=settings.stream_queue_size
            )
            await hub.start()
            stack.push_async_callback(hub.stop)
            app.state.tidings = ServerState(
                settings, pool, redis, names, hub, ArgsValidators(), Submitter(pool, redis, names)
            )
            log.info("server.ready", host=settings.host, port=settings.port)
            yield

    return Starlette(
        routes=[*jobs.routes, *events.routes, *registry.routes, *health.routes],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM end it with exit status 0.

    uvicorn re-raises the stop signal after shutting down, so a supervisor would see the
    process as killed; a drained, orderly stop is a success here.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def main(environ: dict[str, str] | None = None) -> None:
    """Entry point of `python -m server`: serve until interrupted."""
    settings = Settings.from_env(environ)
    configure_logging(settings)
    settings, embedded = start_embedded(settings)
    try:
        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
        )
        GracefulServer(config).run()
    finally:
        embedded.close()
