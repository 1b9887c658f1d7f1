"""Following an SSE stream across dropped connections, without losing or repeating events.

The server numbers a job's events (and a batch's transitions) 1, 2, 3, … and resumes a
stream after the number sent as `Last-Event-ID`. So the client remembers the last seq it
handed out, reconnects with it after any break, and ignores a seq it has already handed
out. `ResumableStream` is that bookkeeping; `StreamCursor` (a job) and
`batch_cursor.BatchCursor` (a batch) add what their events mean. Both clients run the same
cursors; they differ only in how they wait.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Generic, TypeVar

from httpx_sse import ServerSentEvent

from tidings.client import errors
from tidings.client.errors import TidingsError
from tidings.client.models import TERMINAL_KINDS, Event, Job

# Worth another try once a stream was open: the link broke, or the server asked us to wait.
RETRYABLE = (errors.ConnectionError, errors.Unavailable, errors.TooManyRequests)


@dataclass(frozen=True)
class ReconnectPolicy:
    """How hard a stream tries to resume after its connection breaks.

    `attempts` consecutive failed reconnects give up (raising the last error); any event
    received resets the count. Delays grow by `factor` from `first_delay_s` up to
    `max_delay_s`; each is jittered between half and all of that, so clients cut off
    together do not all return together.
    """

    attempts: int = 8
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0
    factor: float = 2.0

    def delay_s(self, failures: int, retry_after_s: float | None = None) -> float:
        """How long to wait before reconnect number `failures` (1-based)."""
        ceiling = min(self.max_delay_s, self.first_delay_s * self.factor ** (failures - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return delay


E = TypeVar("E")


class ResumableStream(Generic[E]):
    """Where a stream is: the last seq handed out, and how many reconnects failed in a row.

    Subclasses are dataclasses holding these attributes, and say what an event is.
    """

    last_seq: int
    policy: ReconnectPolicy
    failures: int
    connected: bool
    seen_in_connection: int

    @property
    def subject(self) -> str:
        """What is streamed, for messages: "job <id>", "batch <id>"."""
        raise NotImplementedError

    def accept(self, sse: ServerSentEvent) -> E | None:
        """The event to hand out, or None for a keep-alive or one handed out already."""
        raise NotImplementedError

    def request_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.last_seq > 0:
            headers["Last-Event-ID"] = str(self.last_seq)
        return headers

    def opened(self) -> None:
        """A connection answered 200 and is streaming."""
        self.connected = True
        self.seen_in_connection = 0

    def heard(self) -> None:
        """Something new arrived: the link works, so the failure count starts again."""
        self.failures = 0
        self.seen_in_connection += 1

    def failed(self, error: TidingsError) -> float:
        """Count a broken or refused connection; the delay before the next try, or raise."""
        if not self.connected:
            # Never connected: the server is not there (or refuses); say so at once.
            raise error
        self.failures += 1
        if self.failures > self.policy.attempts:
            error.message = (
                f"gave up resuming the event stream of {self.subject} after "
                f"{self.policy.attempts} attempts: {error.message}"
            )
            error.args = (error.message,)
            raise error
        return self.policy.delay_s(self.failures, error.retry_after_s)


@dataclass
class StreamCursor(ResumableStream[Event]):
    """A job's stream: its events, ending after a terminal one."""

    job_id: str
    last_seq: int
    policy: ReconnectPolicy
    failures: int = 0
    connected: bool = False
    last_kind: str | None = None
    seen_in_connection: int = 0

    @property
    def subject(self) -> str:
        return f"job {self.job_id}"

    def accept(self, sse: ServerSentEvent) -> Event | None:
        """The event to hand out, or None for a keep-alive or a seq already handed out."""
        # httpx-sse reports keep-alive comments as events with empty data once an id was seen.
        if not sse.data:
            return None
        event = Event.from_json(json.loads(sse.data))
        return self.take(event)

    def take(self, event: Event) -> Event | None:
        """Record `event` as handed out, unless its seq was handed out already."""
        if event.seq <= self.last_seq:
            return None
        self.last_seq = event.seq
        self.last_kind = event.kind
        self.heard()
        return event

    @property
    def closed_quietly(self) -> bool:
        """The last connection ended with nothing new and no terminal event: look closer."""
        return not (self.finished or self.seen_in_connection)

    def check_ended(self, job: Job) -> None:
        """After a quiet close the job should have ended; if not, the server is stopping."""
        if not job.terminal:
            raise errors.ConnectionError(
                "the server closed the event stream early", code="stream_closed"
            )

    def catch_up(self, missed: list[Event]) -> list[Event]:
        """The events of `missed` (history after `last_seq`) not handed out yet, taken."""
        return [event for event in missed if self.take(event) is not None]

    @property
    def finished(self) -> bool:
        """The server closed the stream right after a terminal event: the stream is over."""
        return self.last_kind in TERMINAL_KINDS
