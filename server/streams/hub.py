"""One Redis pub/sub connection per server process, fanned out to every open stream.

Each stream gets a bounded queue. When a queue is full the hub does not block or drop
the stream: it marks the subscription as overflowed, and the stream catches up from
Postgres. After every (re)connection to Redis each subscription is told to resync,
since publishes made while the hub was away are lost to it (but not to Postgres).

The hub knows every open stream, so it is also where the process wakes them all: for a
keep-alive comment (one timer per process, not one per stream) and to close them when
the server shuts down.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

from tidings.core.queue import decode_events
from tidings.core.service import Service
from tidings.core.subscriber import follow_channels

log = structlog.get_logger("tidings.hub")


def batch_key(batch_id: str) -> str:
    """What a batch's streams subscribe under (`Hub.subscribe`): a member's events reach
    them by the `batch_id` they carry."""
    return f"batch:{batch_id}"


class Notice(enum.Enum):
    """What `Subscription.next` returns instead of an event."""

    RESYNC = "resync"  # events may have been missed: re-read Postgres
    KEEPALIVE = "keepalive"  # time to send the client a keep-alive comment
    CLOSED = "closed"  # the server is shutting down: end the stream


class Subscription:
    """One stream's view of the hub: a bounded queue of events and why it was woken.

    Thousands are open at once, so it is kept small: slots, a plain list for the queue
    (an asyncio.Queue brings three deques of ~760 bytes each) and a future only while
    the stream waits (an asyncio.Event brings another deque).
    """

    __slots__ = (
        "_closed",
        "_keepalive",
        "_leave",
        "_size",
        "_waiter",
        "events",
        "job_id",
        "needs_resync",
    )

    def __init__(
        self,
        job_id: str | None,
        size: int,
        *,
        closed: bool = False,
        leave: Callable[[Subscription], None] = lambda subscription: None,
    ) -> None:
        self.job_id = job_id
        self.events: list[dict[str, Any]] = []
        self.needs_resync = False
        self._size = size
        self._keepalive = False
        self._closed = closed
        self._waiter: asyncio.Future[None] | None = None
        self._leave = leave

    # A class-based context manager: a generator-based one would be held, with its
    # frame, by every open stream.
    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._leave(self)

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand an event to the stream, or mark it for a resync when its queue is full."""
        if len(self.events) < self._size:
            self.events.append(event)
        else:
            self.needs_resync = True
        self._wake()

    def mark_resync(self) -> None:
        """Tell the stream it may have missed events and must re-read Postgres."""
        self.needs_resync = True
        self._wake()

    def keep_alive(self) -> None:
        """Ask the stream for a keep-alive comment (when it has nothing else to send)."""
        self._keepalive = True
        self._wake()

    def close(self) -> None:
        """End the stream: `next` returns `Notice.CLOSED` from now on."""
        self._closed = True
        self._wake()

    def end(self, _: object = None) -> None:
        """`close`, as a done-callback: of the task that waits for the client to leave."""
        self.close()

    async def next(self) -> dict[str, Any] | Notice:
        """The next live event, or a `Notice`: resync, keep-alive, or closed."""
        while True:
            if self._closed:
                return Notice.CLOSED
            if self.needs_resync:
                # The re-read covers the queued events and anything that overflowed.
                self.needs_resync = False
                self.events.clear()
                return Notice.RESYNC
            if self.events:
                return self.events.pop(0)
            if self._keepalive:
                self._keepalive = False
                return Notice.KEEPALIVE
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def waiting(self) -> bool:
        """Whether the stream is parked in `next`, waiting for something to wake it."""
        return self._waiter is not None and not self._waiter.done()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


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
        also: Mapping[str, Callable[[bytes], None]] | None = None,
    ) -> None:
        self._redis_url = redis_url
        self._channel = channel
        self._also = dict(also or {})  # other channels on the same connection
        self._queue_size = queue_size
        self._on_event = on_event
        self._on_disconnect = on_disconnect
        # A list per job, not a set: most jobs have one stream, and an empty set is
        # ~200 bytes more than a one-item list.
        self._by_job: dict[str, list[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._service = Service("tidings-hub", self._run)
        self._closing = False
        self.connected = asyncio.Event()

    @property
    def subscriptions(self) -> int:
        """How many streams are subscribed now."""
        return len(self._all) + sum(len(subs) for subs in self._by_job.values())

    def start(self) -> None:
        """Connect and start relaying in the background."""
        self._service.start()

    async def stop(self) -> None:
        """Stop relaying and close the connection."""
        await self._service.stop()

    def subscribe(self, job_id: str | None) -> Subscription:
        """Register a stream for one job's events (or every job's, with None).

        Use it as a context manager: leaving the block unsubscribes.
        """
        subscription = Subscription(
            job_id, self._queue_size, closed=self._closing, leave=self._unsubscribe
        )
        if job_id is None:
            self._all.add(subscription)
        else:
            self._by_job.setdefault(job_id, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        job_id = subscription.job_id
        if job_id is None:
            self._all.discard(subscription)
            return
        group = self._by_job.get(job_id, [])
        if subscription in group:
            group.remove(subscription)
        if not group:
            self._by_job.pop(job_id, None)

    def dispatch(self, event: dict[str, Any]) -> None:
        """Deliver one published event to its job's streams, its batch's streams and the
        all-jobs streams."""
        for subscription in self._by_job.get(event.get("job_id", ""), ()):
            subscription.deliver(event)
        batch_id = event.get("batch_id")
        if batch_id is not None:
            for subscription in self._by_job.get(batch_key(batch_id), ()):
                subscription.deliver(event)
        for subscription in self._all:
            subscription.deliver(event)

    def keep_alive(self) -> None:
        """Ask every open stream for a keep-alive comment."""
        for subscription in self._every_subscription():
            subscription.keep_alive()

    def close_streams(self) -> None:
        """End every open stream, and each one opened from now on (the server is stopping)."""
        self._closing = True
        for subscription in self._every_subscription():
            subscription.close()

    def _every_subscription(self) -> Iterator[Subscription]:
        yield from self._all
        for group in self._by_job.values():
            yield from group

    def _resync_all(self) -> None:
        for subscription in self._every_subscription():
            subscription.mark_resync()

    async def _run(self) -> None:
        await follow_channels(
            self._redis_url,
            {self._channel: self._on_message, **self._also},
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnected,
        )

    def _on_message(self, data: bytes) -> None:
        try:
            events = decode_events(data)
        except (ValueError, KeyError, TypeError) as exc:
            # Whatever it said is in Postgres if it was an event: every stream re-reads.
            log.warning("hub.message_unreadable", error=repr(exc), size=len(data))
            self._resync_all()
            return
        for event in events:
            self._on_event(event)
            self.dispatch(event)

    def _on_disconnected(self) -> None:
        self.connected.clear()
        self._on_disconnect()

    def _on_connect(self) -> None:
        self.connected.set()
        self._resync_all()
