"""The engines a production deployment puts around tidings, run as this test's own processes.

- `PgBouncer` in transaction pooling mode in front of the test Postgres (the machine's or
  the embedded one), on a free port, from Debian's `pgbouncer`.
- `SentinelRedis`: a Redis primary, one replica and three sentinels watching them, from
  Debian's `redis-server` and `redis-sentinel`, each on a free port, persistence off.

Never the machine's own instances of these: every process here is a child of the test,
with its configuration in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis

from tests.support.servers import free_port

START_TIMEOUT_S = 30.0
BINARIES = ("pgbouncer", "redis-server", "redis-sentinel")
MASTER_NAME = "tidings"
# What makes a failover quick enough for a test: a primary silent for 1 s is down.
DOWN_AFTER_MS = 1000


def binary(name: str) -> str | None:
    """Where an engine program is: on PATH, or in sbin (Debian's pgbouncer), else None."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def missing_binaries() -> list[str]:
    """The engine programs this machine lacks (`.ci/run` installs them)."""
    return [name for name in BINARIES if binary(name) is None]


def _program(name: str) -> str:
    found = binary(name)
    assert found is not None, f"{name} is not installed"
    return found


class Child:
    """One engine process whose output is kept (for failures) and drained (so it never blocks)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, argv: list[str], ready: str) -> None:
        """Start `argv` and return once a line of its output contains `ready`."""
        assert not self.running
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        seen = asyncio.Event()
        self._reader = asyncio.create_task(self._read(ready, seen))
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                waiting = asyncio.ensure_future(seen.wait())
                await asyncio.wait([waiting, self._reader], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not start:\n{self.output}") from None
        if not seen.is_set():
            raise RuntimeError(f"{self.name} exited at start:\n{self.output}")

    async def _read(self, ready: str, seen: asyncio.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if ready in line:
                seen.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-40:])

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send `sig` and wait for the process (and its output) to end."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


def _postgres_address(url: str) -> tuple[str, int]:
    """Host (or socket directory) and port of a Postgres URL, as PgBouncer's `host=` reads them."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [str(parts.port or 5432)])[0])
    return host, port


def _run_as(host: str) -> str:
    """The account PgBouncer runs as when started by root (it refuses to run as root).

    Behind a Unix socket that account must reach the socket: the socket directory's owner,
    who runs that Postgres. Over TCP, Debian's `postgres` account.
    """
    if host.startswith("/"):
        return pwd.getpwuid(Path(host).stat().st_uid).pw_name
    return "postgres"


class PgBouncer:
    """PgBouncer in transaction pooling mode, in front of the Postgres of `postgres_url`."""

    def __init__(self, directory: Path, postgres_url: str, *, pool_size: int = 20) -> None:
        self.port = free_port()
        self._directory = directory
        self._child = Child("pgbouncer")
        host, port = _postgres_address(postgres_url)
        self._user = _run_as(host) if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        users = directory / "users.txt"
        users.write_text('"postgres" ""\n')
        self._config = directory / "pgbouncer.ini"
        self._config.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 2000\n"
            f"default_pool_size = {pool_size}\n"
            # What tidings' worker asks of Postgres per session, asked of the pooler here.
            "idle_transaction_timeout = 2\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        for path in (directory, users, self._config):
            path.chmod(0o755 if path.is_dir() else 0o644)

    def url(self, postgres_url: str) -> str:
        """`postgres_url`'s database and user, reached through this PgBouncer."""
        database = urlsplit(postgres_url).path.lstrip("/") or "postgres"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def start(self) -> None:
        argv = [_program("pgbouncer"), str(self._config)]
        if self._user is not None:
            argv[1:1] = ["-u", self._user]
        await self._child.start(argv, "process up")

    async def stop(self) -> None:
        """SIGTERM: PgBouncer closes every client and server connection at once."""
        await self._child.stop(signal.SIGTERM)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self._child.stop(signal.SIGKILL)


class SentinelRedis:
    """A Redis primary, a replica and three sentinels; the primary can be killed."""

    def __init__(self, directory: Path, sentinels: int = 3) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.primary = Child("redis-primary")
        self.replica = Child("redis-replica")
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinels = [Child(f"sentinel-{index}") for index in range(sentinels)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]

    @property
    def url(self) -> str:
        """The `redis+sentinel://` URL every tidings process reads."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}?db=0"

    def _redis_argv(self, port: int, *extra: str) -> list[str]:
        return [
            _program("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._directory),
            *extra,
        ]

    async def start(self) -> None:
        await self.primary.start(self._redis_argv(self.primary_port), "Ready to accept")
        await self.replica.start(
            self._redis_argv(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port)),
            "MASTER <-> REPLICA sync: Finished",
        )
        for child, port in zip(self.sentinels, self.sentinel_ports, strict=True):
            config = self._directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {self._directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            await child.start([_program("redis-sentinel"), str(config)], "+monitor master")
        await self._until_sentinels_know_each_other()

    async def _until_sentinels_know_each_other(self) -> None:
        """Wait until every sentinel sees the replica and the other sentinels (a quorum)."""
        others = len(self.sentinels) - 1
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                states = [
                    await self.sentinel_command(port, "SENTINEL", "MASTER", MASTER_NAME)
                    for port in self.sentinel_ports
                ]
                if all(_field(state, "num-other-sentinels") >= others for state in states) and all(
                    _field(state, "num-slaves") >= 1 for state in states
                ):
                    return
                await asyncio.sleep(0.2)

    async def sentinel_command(self, port: int, *args: Any) -> Any:
        client = aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def master_port(self) -> int:
        """The port the sentinels currently name as the master's."""
        _host, port = await self.sentinel_command(
            self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
        )
        return int(port)

    async def kill_primary(self) -> None:
        """SIGKILL the primary: its connections drop, and its keys live on in the replica."""
        await self.primary.stop(signal.SIGKILL)

    async def until_promoted(self, within_s: float = 30.0) -> None:
        """Wait until the sentinels name the replica as the master."""
        async with asyncio.timeout(within_s):
            while True:
                if await self.master_port() == self.replica_port:
                    return
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        for child in (*self.sentinels, self.replica, self.primary):
            await child.stop(signal.SIGKILL)


def _field(state: Any, name: str) -> int:
    """A number from `SENTINEL MASTER`'s reply (a flat list, or a dict with RESP3)."""
    if isinstance(state, dict):
        return int(state[name])
    pairs = dict(zip(state[::2], state[1::2], strict=True))
    return int(pairs[name])
