"""Group commit of job events: one writer per worker process.

`note` never waits for the network. The writer flushes at once when idle and batches
whatever arrived while a flush was in flight into one transaction, then publishes the
committed events in one pipelined round trip. Writes run in arrival order, so each
job's events keep their order; the database assigns the gapless seq. Progress and log
events of one job that arrive together are written by one statement that updates the
job row once: updating the same row once per event inside one transaction gets slower
with every update (each leaves a dead row version the next must step over).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from core import queue
from core.db import jobs
from core.db.pool import CONNECTION_ERRORS
from core.model import EventKind, event_json

log = structlog.get_logger("tidings.reporter")

MAX_RETRY_DELAY_S = 5.0


@dataclass
class Write:
    """A transition a caller awaits: one statement, its parameters and the result."""

    statement: str
    args: tuple[Any, ...]
    done: asyncio.Future[asyncpg.Record | None]


@dataclass
class Note:
    """A progress or log event of a running attempt, written without anyone waiting."""

    job_id: uuid.UUID
    attempt: int
    kind: EventKind
    current: float | None = None
    total: float | None = None
    message: str | None = None
    data: dict[str, Any] | None = None


def append_args(notes: list[Note]) -> tuple[Any, ...]:
    """Parameters of `jobs.APPEND_EVENTS` for consecutive notes of one attempt."""
    progress = [n for n in notes if n.kind == EventKind.PROGRESS]
    last = progress[-1] if progress else None
    return (
        notes[0].job_id,
        notes[0].attempt,
        len(notes),
        last is not None,
        last.current if last else None,
        last.total if last else None,
        last.message if last else None,
        [str(n.kind) for n in notes],
        [n.current for n in notes],
        [n.total for n in notes],
        [n.message for n in notes],
        [n.data for n in notes],
    )


class Reporter:
    """Persists then publishes job events, batching what accumulates during a flush."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        names: queue.Names,
        *,
        max_pending: int = 10_000,
        on_batch: Callable[[int], None] = lambda events: None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._names = names
        self._pending: deque[Write | Note] = deque()
        self._max_pending = max_pending
        self._on_batch = on_batch
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="tidings-reporter")

    async def close(self) -> None:
        """Flush everything submitted so far, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        await self._idle.wait()

    async def note(self, note: Note) -> None:
        """Queue an event without waiting for it; waits only while the buffer is full."""
        while len(self._pending) >= self._max_pending:
            # Bound reached: the task pauses until the writer catches up, nothing is dropped.
            self._drained.clear()
            await self._drained.wait()
        self._pending.append(note)
        self._idle.clear()
        self._wake.set()

    async def write(self, statement: str, args: tuple[Any, ...]) -> asyncpg.Record | None:
        """Queue a write behind everything already submitted and wait for its row."""
        done: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._pending.append(Write(statement, args, done))
        self._idle.clear()
        self._wake.set()
        return await done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending)
                self._pending.clear()
                self._drained.set()
                await self._flush(batch)
            self._idle.set()
            if self._closing:
                return

    async def _flush(self, batch: list[Write | Note]) -> None:
        delay = 0.05
        while True:
            try:
                results = await self._commit(batch)
                break
            except CONNECTION_ERRORS as exc:
                # Postgres is away: keep the batch and try again; later writes queue behind it.
                log.warning("reporter.retrying", error=repr(exc), events=len(batch), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
            except Exception as exc:
                log.error("reporter.write_failed", error=repr(exc), events=len(batch))
                for item in batch:
                    if isinstance(item, Write) and not item.done.done():
                        item.done.set_exception(exc)
                return
        rows = [row for _, row in results if row is not None]
        self._on_batch(len(rows))
        for write, row in results:
            if write is not None and not write.done.done():
                write.done.set_result(row)
        if rows:
            try:
                await queue.publish_events(self._redis, self._names, map(event_json, rows))
            except (RedisError, OSError) as exc:
                # Subscribers recover missed events from Postgres; the write already counts.
                log.warning("reporter.publish_failed", error=repr(exc), events=len(rows))

    async def _commit(self, batch: list[Write | Note]) -> list[tuple[Write | None, Any]]:
        results: list[tuple[Write | None, Any]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for is_note, run in itertools.groupby(batch, key=lambda w: isinstance(w, Note)):
                if is_note:
                    by_attempt: dict[tuple[uuid.UUID, int], list[Note]] = {}
                    for note in run:
                        assert isinstance(note, Note)
                        by_attempt.setdefault((note.job_id, note.attempt), []).append(note)
                    for notes in by_attempt.values():
                        rows = await conn.fetch(jobs.APPEND_EVENTS, *append_args(notes))
                        results.extend((None, row) for row in rows)
                else:
                    for write in run:
                        assert isinstance(write, Write)
                        results.append((write, await conn.fetchrow(write.statement, *write.args)))
        return results
