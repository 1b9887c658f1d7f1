"""One Redis pub/sub connection per server process, fanned out to every open stream.

Each stream gets a bounded queue. When a queue is full the hub does not block or drop
the stream: it marks the subscription as overflowed, and the stream catches up from
Postgres. After every (re)connection to Redis each subscription is told to resync,
since publishes made while the hub was away are lost to it (but not to Postgres).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from core.queue import decode_events
from core.subscriber import follow_channels


class Subscription:
    """One stream's view of the hub: a bounded queue and an overflow flag."""

    def __init__(self, job_id: str | None, size: int) -> None:
        self.job_id = job_id
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.needs_resync = False
        self._wake = asyncio.Event()

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand an event to the stream, or mark it for a resync when its queue is full."""
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self.mark_resync()
        self._wake.set()

    def mark_resync(self) -> None:
        """Tell the stream it may have missed events and must re-read Postgres."""
        self.needs_resync = True
        self._wake.set()

    async def next(self) -> dict[str, Any] | None:
        """The next live event, or None when the stream must resync from Postgres."""
        while True:
            if self.needs_resync:
                self.needs_resync = False
                while not self.events.empty():
                    self.events.get_nowait()
                return None
            if not self.events.empty():
                return self.events.get_nowait()
            self._wake.clear()
            await self._wake.wait()


class Hub:
    """Relays the events channel to subscriptions by job id (or to all, for `/events`)."""

    def __init__(
        self,
        redis_url: str,
        channel: str,
        *,
        queue_size: int = 256,
        on_event: Callable[[dict[str, Any]], None] = lambda event: None,
        on_disconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis_url = redis_url
        self._channel = channel
        self._queue_size = queue_size
        self._on_event = on_event
        self._on_disconnect = on_disconnect
        self._by_job: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def subscriptions(self) -> int:
        """How many streams are subscribed now."""
        return len(self._all) + sum(len(subs) for subs in self._by_job.values())

    async def start(self) -> None:
        """Connect and start relaying in the background."""
        self._task = asyncio.create_task(self._run(), name="tidings-hub")

    async def stop(self) -> None:
        """Stop relaying and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    @contextmanager
    def subscribe(self, job_id: str | None) -> Iterator[Subscription]:
        """Register a stream for one job's events (or every job's, with None)."""
        subscription = Subscription(job_id, self._queue_size)
        group = self._all if job_id is None else self._by_job.setdefault(job_id, set())
        group.add(subscription)
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)

    def dispatch(self, event: dict[str, Any]) -> None:
        """Deliver one published event to its job's streams and to the all-jobs streams."""
        for subscription in self._by_job.get(event.get("job_id", ""), ()):
            subscription.deliver(event)
        for subscription in self._all:
            subscription.deliver(event)

    def _resync_all(self) -> None:
        for subscription in self._all:
            subscription.mark_resync()
        for group in self._by_job.values():
            for subscription in group:
                subscription.mark_resync()

    async def _run(self) -> None:
        await follow_channels(
            self._redis_url,
            {self._channel: self._on_message},
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnected,
        )

    def _on_message(self, data: bytes) -> None:
        for event in decode_events(data):
            self._on_event(event)
            self.dispatch(event)

    def _on_disconnected(self) -> None:
        self.connected.clear()
        self._on_disconnect()

    def _on_connect(self) -> None:
        self.connected.set()
        self._resync_all()
