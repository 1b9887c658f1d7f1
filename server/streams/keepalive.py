"""One keep-alive timer for every open SSE stream of the process.

Proxies and browsers drop a connection that stays silent too long. Rather than a timer
per stream, one loop asks the hub, once a period, to have every open stream send a
comment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tidings.core.service import Service
from tidings.server.streams.hub import Hub


class KeepAlive:
    """Every `period_s`, asks each of the hub's streams for a keep-alive comment."""

    def __init__(
        self,
        hub: Hub,
        period_s: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._hub = hub
        self._period_s = period_s
        self._sleep = sleep
        self._service = Service("tidings-keepalive", self._run)

    def start(self) -> None:
        """Start ticking in the background."""
        self._service.start()

    async def stop(self) -> None:
        """Stop ticking."""
        await self._service.stop()

    async def _run(self) -> None:
        while True:
            await self._sleep(self._period_s)
            self._hub.keep_alive()
