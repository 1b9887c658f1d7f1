"""Group commit of job events: one writer per worker process.

`note` never waits for the network. The writer flushes at once when idle and batches
whatever arrived while a flush was in flight into one transaction (notes alone, at most
one flush per `MIN_FLUSH_GAP_S`), then publishes the committed events in one pipelined
round trip, along with events committed elsewhere and handed over to be published in
order (a claim's `started`). Writes run in arrival
order, so each job's events keep their order; the database assigns the gapless seq.
Progress and log events of one job that arrive together are written by one statement
that updates the job row once (updating the same row once per event inside one
transaction gets slower with every update: each leaves a dead row version the next
must step over) and stores them as one run row (see migration 0007).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from tidings.core import queue, serialization
from tidings.core.db import jobs
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.events import EventKind, Note, event_json, make_run
from tidings.core.model import iso
from tidings.core.service import Service

# A commit that fails with these is kept and written again: Postgres is away, or chose it
# as a deadlock's victim (rolled back whole).
WRITE_AGAIN: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.DeadlockDetectedError)

log = structlog.get_logger("tidings.reporter")

MAX_RETRY_DELAY_S = 5.0
# Notes alone are flushed at most this often: a note that finds the writer idle for longer
# is written at once (a paced task's events reach streams without delay), while a task
# reporting thousands of times a second has its notes carried by fewer, larger flushes.
MIN_FLUSH_GAP_S = 0.01


# A transition: a statement function of `core.db.jobs` (e.g. `jobs.succeed`), which takes
# the connection and then its parameters by name, and returns the event row or None.
Transition = Callable[..., Awaitable[asyncpg.Record | None]]


@dataclass
class Write:
    """A transition a caller awaits: the statement, its parameters and the result."""

    statement: Transition
    params: dict[str, Any]
    done: asyncio.Future[asyncpg.Record | None]


# What a note says: `core.events.Note`, a plain tuple (see there for why).
NoteItem = Note


@dataclass(slots=True)
class Notes:
    """Consecutive progress or log events of one running attempt, written without waiting."""

    job_id: uuid.UUID
    attempt: int
    items: list[NoteItem]


@dataclass
class Committed:
    """An event already committed elsewhere (a claim's `started`), published in order."""

    event: dict[str, Any]


Pending = Write | Notes | Committed


def last_progress(items: list[NoteItem]) -> tuple[float, float | None, str | None] | None:
    """The (current, total, message) of the last progress event among `items`, if any."""
    for kind, current, total, message, _ in reversed(items):
        if kind == EventKind.PROGRESS:
            assert current is not None
            return current, total, message
    return None


def by_attempt(run: Iterable[Pending]) -> dict[tuple[uuid.UUID, int], list[NoteItem]]:
    """Consecutive notes grouped by job attempt, each group in arrival order."""
    groups: dict[tuple[uuid.UUID, int], list[NoteItem]] = {}
    for notes in run:
        assert isinstance(notes, Notes)
        groups.setdefault((notes.job_id, notes.attempt), []).extend(notes.items)
    return groups


def note_run(head: asyncpg.Record, encoded: orjson.Fragment) -> dict[str, Any]:
    """The events `jobs.append_events` just wrote, as one run (see `core.model.run_events`)."""
    return make_run(
        str(head["id"]),
        head["task"],
        head["queue"],
        head["tenant"],
        None if head["batch_id"] is None else str(head["batch_id"]),
        head["status"],
        head["attempt"],
        iso(head["at"]),
        head["base"] + 1,
        encoded,
    )


class Reporter:
    """Persists then publishes job events, batching what accumulates during a flush."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        names: queue.Names,
        *,
        max_pending: int = 100_000,
        min_gap_s: float = MIN_FLUSH_GAP_S,
        on_batch: Callable[[int], None] = lambda events: None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._names = names
        self._pending: deque[Pending] = deque()
        self._pending_notes = 0
        self._max_pending = max_pending
        self._min_gap_s = min_gap_s
        self._urgent = asyncio.Event()  # a transition or a committed event waits
        self._on_batch = on_batch
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # Closing waits for every write, however long Postgres is away: nothing is dropped.
        self._service = Service(
            "tidings-reporter", self._run, drain=self._finish, stop_timeout_s=None
        )

    def start(self) -> None:
        """Start the writer task."""
        self._service.start()

    async def close(self) -> None:
        """Flush everything submitted so far, then stop the writer."""
        await self._service.stop()

    def _finish(self) -> None:
        self._closing = True
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        await self._idle.wait()

    @property
    def pending_notes(self) -> int:
        """How many progress and log notes wait to be written."""
        return self._pending_notes

    def note(self, job_id: uuid.UUID, attempt: int, item: NoteItem) -> bool:
        """Queue an event without waiting for it; False means the buffer is now full.

        Nothing is dropped: past `max_pending` notes the caller awaits `room()` before
        its next note, so a task outrunning Postgres slows to its pace.
        """
        pending = self._pending
        last = pending[-1] if pending else None
        # Identity, not equality: a `Job` passes the same objects every time, and a miss
        # only starts a new run (runs of one attempt are merged when written).
        if type(last) is Notes and last.job_id is job_id and last.attempt is attempt:
            last.items.append(item)
        else:
            pending.append(Notes(job_id, attempt, [item]))
            self._idle.clear()
            self._wake.set()
        self._pending_notes += 1
        if self._pending_notes < self._max_pending:
            return True
        self._room.clear()
        return False

    async def room(self) -> None:
        """Wait until the writer has taken the notes that filled the buffer."""
        await self._room.wait()

    def publish_committed(self, event: dict[str, Any]) -> None:
        """Publish a committed event with the next batch, after everything queued before it."""
        self._pending.append(Committed(event))
        self._idle.clear()
        self._urgent.set()
        self._wake.set()

    async def write(self, statement: Transition, **params: Any) -> asyncpg.Record | None:
        """Queue `statement(conn, **params)` behind everything already submitted and wait
        for its row."""
        done: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._pending.append(Write(statement, params, done))
        self._idle.clear()
        self._urgent.set()
        self._wake.set()
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = float("-inf")
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                gap_s = last_flush + self._min_gap_s - loop.time()
                if gap_s > 0 and not self._urgent.is_set() and not self._closing:
                    # Notes only, and the last flush was a moment ago: a task is reporting
                    # fast. Let its next notes join this transaction (a transition or a
                    # committed event ends the wait), so a flush carries many events.
                    with suppress(TimeoutError):
                        async with asyncio.timeout(gap_s):
                            await self._urgent.wait()
                batch = list(self._pending)
                self._pending.clear()
                self._pending_notes = 0
                self._urgent.clear()
                self._room.set()
                last_flush = loop.time()
                await self._flush(batch)
            self._idle.set()
            if self._closing:
                return

    async def _flush(self, batch: list[Pending]) -> None:
        delay = 0.05
        while True:
            try:
                written, events, stored = await self._commit(batch)
                break
            except WRITE_AGAIN as exc:
                # Postgres is away, or chose this commit as a deadlock's victim (rolled back
                # whole): keep the batch and try again; later writes queue behind it.
                log.warning("reporter.retrying", error=repr(exc), events=len(batch), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
            except Exception as exc:
                if len(batch) > 1:
                    # Postgres refused something in the batch: write each item on its own,
                    # so that only what it refuses fails (a job's events stay in order).
                    log.warning("reporter.batch_refused", error=repr(exc), items=len(batch))
                    for item in batch:
                        await self._flush([item])
                    return
                log.error("reporter.write_failed", error=repr(exc), events=len(batch))
                for item in batch:
                    if isinstance(item, Write) and not item.done.done():
                        item.done.set_exception(exc)
                return
        self._on_batch(stored)
        for write, row in written:
            if not write.done.done():
                write.done.set_result(row)
        if events:
            try:
                await queue.publish_events(self._redis, self._names, events)
            except (RedisError, OSError) as exc:
                # Subscribers recover missed events from Postgres; the write already counts.
                log.warning("reporter.publish_failed", error=repr(exc), events=len(events))

    async def _commit(
        self, batch: list[Pending]
    ) -> tuple[list[tuple[Write, asyncpg.Record | None]], list[dict[str, Any]], int]:
        """Write the batch in one transaction.

        Returns each write's row, every event to publish in order (runs and committed events
        included), and how many events this commit stored.
        """
        if all(isinstance(item, Committed) for item in batch):
            return [], [item.event for item in batch if isinstance(item, Committed)], 0
        written: list[tuple[Write, asyncpg.Record | None]] = []
        events: list[dict[str, Any]] = []
        stored = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for kind, run in itertools.groupby(batch, key=type):
                if kind is Committed:
                    events.extend(item.event for item in run if isinstance(item, Committed))
                elif kind is Notes:
                    for (job_id, attempt), items in by_attempt(run).items():
                        # Encoded once: the same JSON is stored as is and goes into the
                        # PUBLISH.
                        encoded = serialization.dumps(items)
                        head = await jobs.append_events(
                            conn,
                            job_id=job_id,
                            attempt=attempt,
                            count=len(items),
                            progress=last_progress(items),
                            items=encoded,
                        )
                        if head is not None:  # else the attempt ended: it may add no events
                            events.append(note_run(head, orjson.Fragment(encoded)))
                            stored += len(items)
                else:
                    for write in run:
                        assert isinstance(write, Write)
                        row = await write.statement(conn, **write.params)
                        written.append((write, row))
                        if row is not None:
                            events.append(event_json(row))
                            stored += 1
        return written, events, stored
