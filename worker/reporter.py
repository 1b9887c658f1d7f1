"""Group commit of job events: one writer per worker process.

`submit` never waits for the network. The writer flushes at once when idle and batches
whatever arrived while a flush was in flight into one transaction, then publishes the
committed events in one pipelined round trip. Writes run in arrival order, so each
job's events keep their order; the database assigns the gapless seq.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from core import queue
from core.db.pool import CONNECTION_ERRORS
from core.model import event_json

log = structlog.get_logger("tidings.reporter")

MAX_RETRY_DELAY_S = 5.0


@dataclass
class Write:
    """One event statement and its parameters; `done` is set for writes a caller awaits."""

    statement: str
    args: tuple[Any, ...]
    done: asyncio.Future[asyncpg.Record | None] | None = None


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
        self._pending: deque[Write] = deque()
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

    async def submit(self, statement: str, args: tuple[Any, ...]) -> None:
        """Queue a write without waiting for it; waits only while the buffer is full."""
        while len(self._pending) >= self._max_pending:
            # Bound reached: the task pauses until the writer catches up, nothing is dropped.
            self._drained.clear()
            await self._drained.wait()
        self._pending.append(Write(statement, args))
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

    async def _flush(self, batch: list[Write]) -> None:
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
                for write in batch:
                    if write.done is not None and not write.done.done():
                        write.done.set_exception(exc)
                return
        rows = [row for write, row in results if row is not None]
        self._on_batch(len(rows))
        for write, row in results:
            if write.done is not None and not write.done.done():
                write.done.set_result(row)
        if rows:
            try:
                await queue.publish_events(self._redis, self._names, map(event_json, rows))
            except (RedisError, OSError) as exc:
                # Subscribers recover missed events from Postgres; the write already counts.
                log.warning("reporter.publish_failed", error=repr(exc), events=len(rows))

    async def _commit(self, batch: list[Write]) -> list[tuple[Write, asyncpg.Record | None]]:
        results: list[tuple[Write, asyncpg.Record | None]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            runs = itertools.groupby(batch, key=lambda w: (w.statement, w.done is None))
            for (statement, fire_and_forget), run in runs:
                writes = list(run)
                if fire_and_forget and len(writes) > 1:
                    rows = await conn.fetchmany(statement, [w.args for w in writes])
                    results.extend((writes[0], row) for row in rows)
                else:
                    for write in writes:
                        results.append((write, await conn.fetchrow(statement, *write.args)))
        return results
