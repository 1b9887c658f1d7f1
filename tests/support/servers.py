"""Starting the real server and worker for tests: in this event loop, or as processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, fields, replace

import uvicorn
from starlette.types import ASGIApp

from tests.support.paths import REPO_ROOT
from tidings.core.settings import Settings
from tidings.server.app import GracefulServer, server_for
from tidings.worker.app import run_worker

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerHandle:
    url: str


@dataclass
class WorkerHandle:
    stop: asyncio.Event


@asynccontextmanager
async def serve(
    app: ASGIApp, before_shutdown: Callable[[], None] = lambda: None
) -> AsyncIterator[str]:
    """Serve any ASGI app with uvicorn inside the running loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    async with run_server(GracefulServer(config, before_shutdown)) as url:
        yield url


@asynccontextmanager
async def run_server(server: GracefulServer) -> AsyncIterator[str]:
    """Run a configured uvicorn server inside the running loop; yields its base URL."""
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(START_TIMEOUT_S):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://{server.config.host}:{server.config.port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def start_server(settings: Settings) -> AsyncIterator[ServerHandle]:
    """Serve the tidings app inside the running loop, as `tidings server` does, on a free port."""
    local = replace(settings, host="127.0.0.1", port=free_port())
    async with run_server(server_for(local)) as url:
        yield ServerHandle(url)


@asynccontextmanager
async def start_worker(settings: Settings) -> AsyncIterator[WorkerHandle]:
    """Run a worker inside the running loop until the block ends."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, ready))
    ready_wait = asyncio.create_task(ready.wait())
    async with asyncio.timeout(START_TIMEOUT_S):
        await asyncio.wait([task, ready_wait], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready_wait.cancel()
        task.result()
    try:
        yield WorkerHandle(stop)
    finally:
        stop.set()
        await task


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read `settings`."""
    env = dict(os.environ)
    for item in fields(settings):
        value = getattr(settings, item.name)
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        env[f"TIDINGS_{item.name.upper()}"] = text
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@dataclass
class Process:
    """A child `python -m server|worker` whose stderr is read line by line."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _seen: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None
    _eof: bool = False

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._seen:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._seen.notify_all()
        async with self._seen:
            self._eof = True
            self._seen.notify_all()

    async def wait_for_line(self, needle: str, within_s: float = START_TIMEOUT_S) -> str:
        """The first stderr line containing `needle`; fails if the process exits first."""
        async with asyncio.timeout(within_s), self._seen:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self._eof:
                    raise RuntimeError(f"process exited before {needle!r}:\n" + self.output)
                await self._seen.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    async def stop(self, within_s: float = 20.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time."""
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within_s):
                code = await self.proc.wait()
        except TimeoutError:
            self.signal(signal.SIGKILL)
            code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return code


async def spawn(
    module: str, settings: Settings, condition: asyncio.Condition | None = None
) -> Process:
    """Start `python -m module` configured by `settings`; `condition` is notified per line."""
    argv = [sys.executable, "-m", module]
    return await spawn_command(argv, settings_env(settings), REPO_ROOT, condition)


async def spawn_command(
    argv: list[str],
    env: dict[str, str],
    cwd: os.PathLike[str] | str,
    condition: asyncio.Condition | None = None,
) -> Process:
    """Start any command whose stderr is read line by line."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    process = Process(proc) if condition is None else Process(proc, _seen=condition)
    process._reader = asyncio.create_task(process._read())
    return process


class LogWatch:
    """Waits on what several processes write, e.g. a count of log lines across workers."""

    def __init__(self) -> None:
        self.condition = asyncio.Condition()
        self.processes: list[Process] = []

    async def spawn(self, module: str, settings: Settings) -> Process:
        process = await spawn(module, settings, self.condition)
        self.processes.append(process)
        return process

    def count(self, needle: str) -> int:
        """How many lines of all processes contain `needle`."""
        return sum(needle in line for process in self.processes for line in process.lines)

    async def until_count(self, needle: str, expected: int, within_s: float = 60.0) -> None:
        """Wait until `expected` lines contain `needle`."""
        async with asyncio.timeout(within_s), self.condition:
            await self.condition.wait_for(lambda: self.count(needle) >= expected)


async def run_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    """`tidings ARGS…` as a process configured by `settings`: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.cli",
        *args,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
