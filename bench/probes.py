"""Reading the system under test from outside: Redis command counts, pub/sub clients, memory."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis


class RedisProbe:
    """Counts what one process does on Redis, without being one of the counted clients.

    On a private Redis (embedded, this run's alone, with only the process under test
    running) server-wide counters are exact. On a shared Redis reached over TCP, the
    process's connections are told apart by their local ports, read from /proc.
    """

    def __init__(self, redis_url: str, *, private: bool) -> None:
        self._client = aioredis.Redis.from_url(redis_url)
        self._private = private
        self._tcp = not redis_url.startswith("unix:")

    async def close(self) -> None:
        await self._client.aclose()

    async def command_rate(self, window_s: float, pid: int) -> tuple[float, str]:
        """Commands per second that process `pid` sends over `window_s`, and how counted."""
        if self._private:
            return await self._commandstats_rate(window_s), "INFO commandstats, private Redis"
        if not self._tcp:
            rate = await self._commandstats_rate(window_s)
            return rate, "INFO commandstats of a shared Redis: every client counted"
        return await self._monitor_rate(window_s, pid), "MONITOR, the process's connections"

    async def subscribers(self, pid: int) -> int:
        """Connections of process `pid` subscribed to a channel or pattern.

        On a private unix-socket Redis every subscribed connection counts: the bench has
        none, and only the process under test runs.
        """
        ports = tcp_ports(pid) if self._tcp else None
        clients: list[dict[str, Any]] = await self._client.client_list()
        return sum(
            1
            for client in clients
            if any(int(client.get(kind, 0)) > 0 for kind in ("sub", "psub", "ssub"))
            and (ports is None or _port(client["addr"]) in ports)
        )

    async def _commandstats_rate(self, window_s: float) -> float:
        before = await self._command_total()
        await asyncio.sleep(window_s)
        return (await self._command_total() - before) / window_s

    async def _command_total(self) -> int:
        # The probe's own INFO calls are left out; nothing else it does runs in the window.
        stats = await self._client.info("commandstats")
        return sum(value["calls"] for name, value in stats.items() if name != "cmdstat_info")

    async def _monitor_rate(self, window_s: float, pid: int) -> float:
        ports = tcp_ports(pid)
        seen: list[int] = []
        deadline = time.monotonic() + window_s
        async with self._client.monitor() as monitor:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(left):
                        command = await monitor.next_command()
                except TimeoutError:
                    break
                seen.append(int(command["client_port"] or 0))
        ports |= tcp_ports(pid)  # connections opened during the window count too
        return sum(port in ports for port in seen) / window_s


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


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


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (user + system) a process and the run's Postgres backends have used.

    Unlike wall time, CPU per job does not depend on what else the machine runs, so it
    says where time goes even on a busy machine.
    """

    process_s: float
    postgres_s: float

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(self.process_s - other.process_s, self.postgres_s - other.postgres_s)


def cpu_use(pid: int, database: str, exclude: Collection[int] = ()) -> CpuUse:
    """CPU used so far by `pid` and by the Postgres backends of `database` on this host.

    `exclude` names backends not to count (the bench's own). Backends that exit between
    two readings take their CPU with them, so pooled connections are what this measures.
    """
    backends = [pid for pid in _backends(database) if pid not in exclude]
    return CpuUse(_cpu_seconds(pid), sum(_cpu_seconds(p) for p in backends))


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # it exited
        return 0.0
    # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(database: str) -> list[int]:
    # A backend's process title is "postgres: <user> <database> <client> <state>".
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
            pids.append(int(entry.name))
    return pids
