"""The processes under test: `python -m server`, `python -m worker`, `python -m bench.raw_arq`.

Each process writes its log to a file of the run (read back for its ready line), so a busy
process never blocks on a pipe that the bench is too busy to drain.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bench import raw_arq
from bench.backing import Backing
from bench.config import REPO_ROOT, BenchConfig
from tidings.core.settings import DEFAULT_TASK_MODULES, Settings

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
BENCH_TASK_MODULE = "bench.tasks"
STREAM_CAPS = ("max_streams", "max_streams_per_tenant")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child read exactly `settings` (no inherited TIDINGS_*)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TIDINGS_")}
    for item in fields(settings):
        value = getattr(settings, item.name)
        env[f"TIDINGS_{item.name.upper()}"] = (
            ",".join(value) if isinstance(value, tuple) else str(value)
        )
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@dataclass
class Service:
    """A child process and its log file."""

    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def wait_for(self, needle: str, within_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the log has a line containing `needle`; fail if the process exits."""
        deadline = time.monotonic() + within_s
        while needle not in self.log_path.read_text(errors="replace"):
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited before {needle!r}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {needle!r} in {within_s:g}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        """SIGTERM and wait for an orderly exit; SIGKILL if it takes too long."""
        with suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                return await self.proc.wait()
        except TimeoutError:
            with suppress(ProcessLookupError):
                self.proc.kill()
            return await self.proc.wait()


@dataclass(frozen=True)
class RunningServer:
    service: Service
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Services:
    """Starts and stops the run's processes, each against the run's Postgres and Redis."""

    def __init__(self, backing: Backing, config: BenchConfig, log_dir: Path) -> None:
        self._backing = backing
        self._config = config
        self._log_dir = log_dir
        self._counter = itertools.count(1)
        log_dir.mkdir(parents=True, exist_ok=True)
        for stale in log_dir.glob("*.log"):  # the previous run's
            stale.unlink()

    @property
    def settings(self) -> Settings:
        """What the tidings server and worker processes run with."""
        defaults = Settings()
        return replace(
            defaults,
            **self._lifted_limits(defaults),
            database_url=self._backing.database_url,
            redis_url=self._backing.redis_url,
            namespace=self._backing.namespace,
            tasks=(*DEFAULT_TASK_MODULES, BENCH_TASK_MODULE),
            concurrency=self._config.concurrency,
            poll_delay_s=self._config.poll_delay_s,
            log_format="json",
            log_level="info",
            data_dir=self._config.data_dir,
            **dict(self._config.settings_overrides),
        )

    def _lifted_limits(self, defaults: Settings) -> dict[str, Any]:
        """Settings that would refuse the bench's load, set to let it through.

        The bench is the only client, on loopback, and measures capacity: it runs without
        API keys (so without their per-key rate limit), with the open-stream caps above
        the SSE scenario's count, and without a per-address connection cap (every stream
        comes from one address). Only settings this version has are touched.
        """
        streams = self._config.sse_streams + 1_000
        wanted: dict[str, Any] = {"auth": "off", "max_connections_per_address": 0}
        for name in STREAM_CAPS:
            wanted[name] = max(getattr(defaults, name, 0), streams)
        known = {item.name for item in fields(defaults)}
        return {name: value for name, value in wanted.items() if name in known}

    @asynccontextmanager
    async def server(self) -> AsyncIterator[RunningServer]:
        """One `python -m server` on a free port, ready to take requests."""
        settings = replace(self.settings, host="127.0.0.1", port=free_port())
        service = await self._spawn("server", ["-m", "tidings.server"], settings_env(settings))
        try:
            await service.wait_for("server.ready")
            yield RunningServer(service, settings.host, settings.port)
        finally:
            await service.stop()

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Service]:
        """One `python -m worker`, with its consumers running."""
        service = await self._spawn("worker", ["-m", "tidings.worker"], settings_env(self.settings))
        try:
            await service.wait_for("worker.ready")
            yield service
        finally:
            await service.stop()

    @asynccontextmanager
    async def raw_worker(self) -> AsyncIterator[Service]:
        """A plain ARQ worker with the same max_jobs and poll_delay as the tidings worker."""
        args = [
            "-m",
            "bench.raw_arq",
            "--redis-url",
            self._backing.redis_url,
            "--queue",
            raw_arq.queue_name(self._backing.namespace),
            "--max-jobs",
            str(self._config.concurrency),
            "--poll-delay",
            str(self._config.raw_poll_s),
        ]
        service = await self._spawn("raw-arq", args, settings_env(self.settings))
        try:
            await service.wait_for(raw_arq.READY_LINE)
            yield service
        finally:
            await service.stop()

    async def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Service:
        log_path = self._log_dir / f"{next(self._counter):02d}-{name}.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                env=env,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        return Service(name, proc, log_path)
