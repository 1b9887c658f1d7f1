"""Following a batch's SSE stream across dropped connections (`stream_batch`).

A batch's stream numbers its members' transitions 1, 2, 3, … (the SSE id) and resumes
after `Last-Event-ID` like a job's; between them come `progress` snapshots, which have no
id, and at the end one `batch.finished`. So a transition is handed out once by its seq, a
snapshot older than what was handed out is dropped, and the end is handed out once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from httpx_sse import ServerSentEvent

from tidings.client import errors
from tidings.client.batch_models import (
    Batch,
    BatchEvent,
    BatchFinished,
    BatchJobEvent,
    BatchProgressEvent,
    parse_batch_event,
)
from tidings.client.reconnect import ReconnectPolicy, ResumableStream


@dataclass
class BatchCursor(ResumableStream[BatchEvent]):
    """Where a batch's stream is: the last transition handed out, and whether it ended."""

    batch_id: str
    last_seq: int
    policy: ReconnectPolicy
    failures: int = 0
    connected: bool = False
    seen_in_connection: int = 0
    finished: bool = False

    @property
    def subject(self) -> str:
        return f"batch {self.batch_id}"

    def accept(self, sse: ServerSentEvent) -> BatchEvent | None:
        # httpx-sse reports keep-alive comments as events with empty data once an id was seen.
        if not sse.data:
            return None
        event = parse_batch_event(sse.event, json.loads(sse.data))
        return None if event is None else self.take(event)

    def take(self, event: BatchEvent) -> BatchEvent | None:
        """Record `event` as handed out; None if it was handed out already (or is stale)."""
        if isinstance(event, BatchJobEvent):
            if event.seq <= self.last_seq:
                return None
            self.last_seq = event.seq
        elif isinstance(event, BatchProgressEvent):
            if event.seq < self.last_seq:
                return None  # a snapshot from before transitions already handed out
        else:
            if self.finished:
                return None
            self.finished = True
            self.last_seq = max(self.last_seq, event.seq)
        self.heard()
        return event

    @property
    def closed_quietly(self) -> bool:
        """The last connection ended with nothing new and no end: look closer."""
        return not (self.finished or self.seen_in_connection)

    def may_have_ended(self, event: BatchEvent) -> bool:
        """A snapshot in which no member is open, with nothing after it: the stream was
        resumed after its own end (the server then has no `batch.finished` left to send),
        or the end is on its way. Worth asking the batch itself."""
        return (
            isinstance(event, BatchProgressEvent)
            and not self.finished
            and event.counts.open == 0
            and event.seq == self.last_seq
        )

    def end_if_finished(self, batch: Batch) -> BatchFinished | None:
        """The batch's end, taken, if it finished with nothing after `last_seq`."""
        try:
            return self.end_of(batch)
        except errors.ConnectionError:
            return None

    def end_of(self, batch: Batch) -> BatchFinished:
        """After a quiet close the batch should have finished with nothing after `last_seq`
        (the server had nothing more to say): its end, taken. Otherwise the server is
        stopping: reconnect, and it replays what is missing."""
        if not batch.finished or batch.seq > self.last_seq:
            raise errors.ConnectionError(
                "the server closed the event stream early", code="stream_closed"
            )
        end = BatchFinished.of(batch)
        self.finished = True
        self.last_seq = max(self.last_seq, end.seq)
        return end
