"""Group commit of submissions: concurrent submits share one statement and one Redis trip.

Alone, each submission costs a Postgres round trip and a Redis pipeline of its own, and
at a few thousand a second that per-request I/O is most of a server's CPU. The batcher
flushes at once when idle and batches whatever arrived while a flush was in flight (as
the worker's reporter does for events): one `INSERT_JOBS` writes every job with its
`queued` event, and only after it commits does one pipeline enqueue and publish them all.
Each caller awaits its own row. A submission that the shared statement cannot take (the
statement fails for a reason other than an unreachable Postgres) is retried alone, so it
fails by itself and the others still commit.

Submissions that read before they write (result-cache hits) or name a cron slot keep the
`Submitter`'s one-at-a-time path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import structlog

from core.db import jobs
from core.db.pool import CONNECTION_ERRORS
from core.submission import JobRequest, Submitted, Submitter

log = structlog.get_logger("tidings.submission")

# Parameters of `INSERT_JOBS` come from the first eleven of `JobRequest.insert_args`.
INSERT_JOBS_COLUMNS = 11


@dataclass
class Pending:
    """One submission waiting for its batch: the id it will get and its caller's future."""

    request: JobRequest
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)
    done: asyncio.Future[asyncpg.Record | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def insert_jobs_args(batch: list[Pending]) -> list[list[object]]:
    """Parameters of `jobs.INSERT_JOBS`: one array per column, one element per job."""
    rows = [item.request.insert_args(item.job_id)[:INSERT_JOBS_COLUMNS] for item in batch]
    return [list(column) for column in zip(*rows, strict=True)]


class SubmitBatcher:
    """Creates jobs in batches of whatever is submitted concurrently."""

    def __init__(
        self,
        submitter: Submitter,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 500,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._submitter = submitter
        self._pool = pool
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._pending: deque[Pending] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the flushing task."""
        self._task = asyncio.create_task(self._run(), name="tidings-submit-batcher")

    async def close(self) -> None:
        """Write everything submitted so far, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(self, request: JobRequest) -> Submitted | None:
        """Create the job, or return the one its idempotency key names (as `Submitter.submit`)."""
        running = self._task is not None and not self._task.done() and not self._closing
        if not running or request.cache_ttl_s or request.schedule_key is not None:
            return await self._submitter.submit(request)
        pending = Pending(request)
        self._pending.append(pending)
        self._wake.set()
        row = await pending.done
        if row is None:  # its idempotency key was taken, maybe by an earlier row of the batch
            return Submitted(await self._submitter.existing(request), created=False)
        return Submitted(row, created=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                count = min(len(self._pending), self._max_batch)
                batch = [self._pending.popleft() for _ in range(count)]
                self._on_batch(len(batch))
                try:
                    await self._flush(batch)
                except Exception as exc:  # a bug must fail these callers, not every later one
                    log.exception("submissions.flush_crashed", jobs=len(batch))
                    _fail(batch, exc)
            if self._closing:
                return

    async def _flush(self, batch: list[Pending]) -> None:
        try:
            rows = await self._pool.fetch(jobs.INSERT_JOBS, *insert_jobs_args(batch))
        except CONNECTION_ERRORS as exc:
            _fail(batch, exc)  # Postgres is away: each caller answers 503
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            log.warning("submissions.batch_failed", jobs=len(batch), error=repr(exc))
            for item in batch:  # find the one that cannot be written; the rest still are
                await self._flush([item])
            return
        await self._submitter.announce(rows)
        by_id = {row["id"]: row for row in rows}
        for item in batch:
            if not item.done.done():  # its caller may have gone away
                item.done.set_result(by_id.get(item.job_id))


def _fail(batch: list[Pending], exc: BaseException) -> None:
    for item in batch:
        if not item.done.done():
            item.done.set_exception(exc)
