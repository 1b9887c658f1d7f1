"""Reading the system under test from outside: Redis command counts, pub/sub clients, memory."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis


class RedisProbe:
    """Counts what processes do on Redis, without being one of the counted clients.

    On a private Redis (embedded, this run's alone) the server-wide INFO commandstats
    delta is exact. On a shared one, MONITOR counts only the commands of connections that
    did not exist before the process under test started.
    """

    def __init__(self, redis_url: str, *, private: bool) -> None:
        self._client = aioredis.Redis.from_url(redis_url)
        self.private = private

    async def close(self) -> None:
        await self._client.aclose()

    async def clients(self) -> list[dict[str, Any]]:
        """CLIENT LIST, one dict per connection."""
        result: list[dict[str, Any]] = await self._client.client_list()
        return result

    async def command_rate(self, window_s: float, known: list[dict[str, Any]]) -> tuple[float, str]:
        """Commands per second over `window_s` from connections not in `known`, and how counted."""
        if self.private:
            return await self._commandstats_rate(window_s), "INFO commandstats, private Redis"
        if _all_unix(known):
            rate = await self._commandstats_rate(window_s)
            return rate, "INFO commandstats of a shared Redis: every client counted"
        known_addrs = {client["addr"] for client in known}
        return await self._monitor_rate(window_s, known_addrs), "MONITOR, new connections only"

    async def subscribers(self, known: list[dict[str, Any]]) -> int:
        """Connections (not in `known`) subscribed to at least one channel or pattern."""
        old = {client["id"] for client in known}
        return sum(
            1
            for client in await self.clients()
            if client["id"] not in old
            and any(int(client.get(kind, 0)) > 0 for kind in ("sub", "psub", "ssub"))
        )

    async def _commandstats_rate(self, window_s: float) -> float:
        before = await self._command_total()
        await asyncio.sleep(window_s)
        return (await self._command_total() - before) / window_s

    async def _command_total(self) -> int:
        # The probe's own INFO calls are left out; nothing else it does runs in the window.
        stats = await self._client.info("commandstats")
        return sum(value["calls"] for name, value in stats.items() if name != "cmdstat_info")

    async def _monitor_rate(self, window_s: float, known_addrs: set[str]) -> float:
        count = 0
        deadline = time.monotonic() + window_s
        async with self._client.monitor() as monitor:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(left):
                        command = await monitor.next_command()
                except TimeoutError:
                    break
                addr = f"{command['client_address']}:{command['client_port']}"
                count += addr not in known_addrs
        return count / window_s


def _all_unix(clients: list[dict[str, Any]]) -> bool:
    # Unix-socket clients share one address, so MONITOR cannot tell them apart.
    return any(client["addr"].startswith("/") for client in clients)


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
