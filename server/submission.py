"""Group commit of the server's submissions.

Concurrent submits share one statement and one Redis trip. Alone, each submission costs
a Postgres round trip and a Redis pipeline of its own, and at a few thousand a second
that per-request I/O is most of a server's CPU. Batched (see `server.batching`), one
`jobs.insert_jobs` writes every job of the batch with its `queued` event, and only after
it commits does one pipeline enqueue and publish them all; each caller awaits its own
row. A batch the statement refuses for a reason other than an unreachable Postgres is
retried one job at a time, so a bad submission fails alone and the others still commit.

Submissions that read before they write (result-cache hits) or name a cron slot keep the
`Submitter`'s one-at-a-time path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from tidings.core.db import jobs
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.submission import JobRequest, Submitted, Submitter
from tidings.server.batching import Batcher

log = structlog.get_logger("tidings.submission")

Outcome = asyncpg.Record | None | BaseException


@dataclass(frozen=True)
class Pending:
    """One submission in a batch, with the id its job will get and the log context of the
    request that made it (the batch is written from another task, which lacks it)."""

    request: JobRequest
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)
    log_context: dict[str, Any] = field(default_factory=structlog.contextvars.get_contextvars)


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
        self._batcher: Batcher[Pending, asyncpg.Record | None] = Batcher(
            self._insert, name="tidings-submit-batcher", max_batch=max_batch, on_batch=on_batch
        )

    def start(self) -> None:
        """Start batching."""
        self._batcher.start()

    async def close(self) -> None:
        """Write everything submitted so far, then stop batching."""
        await self._batcher.close()

    async def submit(self, request: JobRequest) -> Submitted | None:
        """Create the job, or return the one its idempotency key names (as `Submitter.submit`)."""
        one_at_a_time = request.cache_ttl_s or request.schedule_key is not None
        if one_at_a_time or not self._batcher.running:
            return await self._submitter.submit(request)
        row = await self._batcher.call(Pending(request))
        if row is None:  # its idempotency key was taken, maybe by an earlier row of the batch
            return Submitted(await self._submitter.existing(request), created=False)
        return Submitted(row, created=True)

    async def _insert(self, batch: list[Pending]) -> list[Outcome]:
        try:
            new_jobs = [item.request.new_job(item.job_id) for item in batch]
            rows = await jobs.insert_jobs(self._pool, new_jobs)
        except CONNECTION_ERRORS:
            raise  # Postgres is away: every caller answers 503, none is retried
        except Exception as exc:
            if len(batch) == 1:
                raise
            log.warning("submissions.batch_refused", jobs=len(batch), error=repr(exc))
            return [await self._insert_alone(item) for item in batch]
        await self._submitter.enqueue_committed(
            rows, {item.job_id: item.log_context for item in batch}
        )
        by_id = {row["id"]: row for row in rows}
        return [by_id.get(item.job_id) for item in batch]

    async def _insert_alone(self, item: Pending) -> Outcome:
        try:
            [outcome] = await self._insert([item])
        except Exception as exc:
            return exc
        return outcome
