"""A background service: the one start/stop contract every loop in tidings keeps.

The hub, the keep-alive timer, the reporter, the batchers, the heartbeat, the cron
scheduler, the cancel listener and the maintenance loops each run one `Service`:

- `start()` starts `run()` in a task of its own; starting a running service is an error.
- `stop()` first asks the loop to finish (`drain`, when given: the reporter and the batchers
  write what they hold), waits up to `stop_timeout_s` for it (None: as long as it takes),
  then cancels it; a loop without `drain` is cancelled at once. Stopping twice, or a
  service never started, is harmless.
- A crash (an exception escaping `run`) is logged, then, by policy, the loop is started
  again after a capped exponential backoff (`restart=True`, the default: the service keeps
  its state, so nothing it held is lost) or the service stays down and `stop()` raises the
  error to its owner (`restart=False`). An error of a type listed in `outages` (Redis
  away, say) is expected: `<log_name>.restarting` at warning. Anything else is a bug:
  `<log_name>.crashed`, with its traceback. A run that lasted longer than the longest
  delay ended a new outage, which starts again at the shortest delay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

log = structlog.get_logger("tidings.service")

FIRST_RESTART_DELAY_S = 0.1
MAX_RESTART_DELAY_S = 5.0

Sleep = Callable[[float], Awaitable[Any]]


class Service:
    """Runs `run()` in the background under the contract above."""

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        drain: Callable[[], None] | None = None,
        stop_timeout_s: float | None = 10.0,
        restart: bool = True,
        outages: tuple[type[BaseException], ...] = (),
        on_restart: Callable[[], None] = lambda: None,
        log_name: str = "service",
        log_fields: Mapping[str, Any] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self._run = run
        self._drain = drain
        self._stop_timeout_s = stop_timeout_s
        self._restart = restart
        self._outages = outages
        self._on_restart = on_restart
        self._log_name = log_name
        self._log_fields = {"service": name} if log_fields is None else dict(log_fields)
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.crashes = 0

    @property
    def running(self) -> bool:
        """Started, not yet stopped, and not down after a fatal crash."""
        return self._task is not None and not self._task.done() and not self._stopping

    def start(self) -> None:
        """Start the loop in the background."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self.name} is already running")
        self._stopping = False
        self._task = asyncio.create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        """Drain (if the service can), then cancel what is left; raises a fatal crash."""
        task, self._stopping = self._task, True
        if task is None:
            return
        if self._drain is not None and not task.done():
            self._drain()
            try:
                done, _ = await asyncio.wait([task], timeout=self._stop_timeout_s)
            except asyncio.CancelledError:  # the owner stops waiting: so does the loop
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            if not done:
                log.warning("service.drain_timed_out", service=self.name)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def _supervise(self) -> None:
        delay = FIRST_RESTART_DELAY_S
        while True:
            started = time.monotonic()
            try:
                await self._run()
                return
            except Exception as exc:
                self.crashes += 1
                if time.monotonic() - started > MAX_RESTART_DELAY_S:
                    delay = FIRST_RESTART_DELAY_S
                if not self._restart or self._stopping:
                    log.exception(f"{self._log_name}.crashed", **self._log_fields)
                    raise
                if isinstance(exc, self._outages):
                    log.warning(
                        f"{self._log_name}.restarting",
                        **self._log_fields,
                        error=repr(exc),
                        delay_s=delay,
                    )
                else:
                    log.exception(f"{self._log_name}.crashed", **self._log_fields, delay_s=delay)
            await self._sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
            self._on_restart()
