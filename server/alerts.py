"""A webhook called when a task's failure ratio crosses a threshold.

Outcomes come from the events feed. Each task keeps a sliding window of its recent
outcomes; once enough jobs ended in the window and the share that failed reaches the
threshold, the webhook is called. A Redis key with a TTL rate-limits the call per task
across every server process, so a failing task pages once per cooldown, not per server.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

log = structlog.get_logger("tidings.alerts")

WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class AlertPolicy:
    """When a task's failures are worth a page."""

    webhook_url: str
    failure_ratio: float = 0.5
    min_jobs: int = 10
    window_s: float = 300.0
    cooldown_s: float = 900.0


class FailureAlerts:
    """Watches outcomes per task and calls the webhook when failures dominate."""

    def __init__(
        self,
        policy: AlertPolicy,
        redis: ArqRedis,
        namespace: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._policy = policy
        self._redis = redis
        self._namespace = namespace
        self._clock = clock
        self._outcomes: dict[str, deque[tuple[float, bool]]] = {}
        self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, transport=transport)
        self._sending: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self._client.aclose()

    def observe(self, event: dict[str, Any]) -> None:
        """Record a terminal outcome; may start a webhook call."""
        kind, task = event.get("kind"), event.get("task")
        if kind not in ("succeeded", "failed") or not isinstance(task, str):
            return
        now = self._clock()
        window = self._outcomes.setdefault(task, deque())
        window.append((now, kind == "failed"))
        while window and window[0][0] < now - self._policy.window_s:
            window.popleft()
        failed = sum(1 for _, is_failure in window if is_failure)
        if len(window) < self._policy.min_jobs or failed / len(window) < self._policy.failure_ratio:
            return
        sending = asyncio.create_task(self._send(task, failed, len(window)))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send(self, task: str, failed: int, ended: int) -> None:
        key = f"{self._namespace}:alert:{task}"
        try:
            first = await self._redis.set(key, b"1", nx=True, ex=int(self._policy.cooldown_s))
        except (RedisError, OSError) as exc:
            log.warning("alert.rate_limit_unavailable", task=task, error=repr(exc))
            return
        if not first:
            return
        payload = {
            "alert": "task_failure_ratio",
            "task": task,
            "failed": failed,
            "ended": ended,
            "failure_ratio": round(failed / ended, 4),
            "threshold": self._policy.failure_ratio,
            "window_s": self._policy.window_s,
        }
        try:
            response = await self._client.post(self._policy.webhook_url, json=payload)
            response.raise_for_status()
            log.warning("alert.sent", **payload)
        except httpx.HTTPError as exc:
            log.error("alert.webhook_failed", task=task, error=repr(exc))
