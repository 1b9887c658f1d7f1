"""Submitting jobs from the bench and reading their timings back from Postgres.

Jobs are created with the `Submitter` the server uses (row, `queued` event, token,
publish). Every tidings timing comes from Postgres timestamps (`created_at` and event
`at`, the latter `clock_timestamp()`), so one clock measures both ends of an interval.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import jobs
from tidings.core.events import event_json
from tidings.core.submission import JobRequest, Submitter

TERMINAL_STATUSES = ["succeeded", "failed", "cancelled"]
CHUNK = 1_000
TENANT = "default"
#: The application_name of the bench's own connections, to leave out of CPU readings.
APPLICATION_NAME = "tidings-bench"

FINISHED = "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])"

SPAN = """
SELECT extract(epoch FROM min(at) FILTER (WHERE kind = 'started'))::float8 AS first_start,
       extract(epoch FROM max(at) FILTER (WHERE kind = 'succeeded'))::float8 AS last_end,
       count(*) FILTER (WHERE kind = 'succeeded') AS succeeded
FROM job_history WHERE job_id = ANY($1::uuid[])
"""

STARTED_AT = """
SELECT job_id, extract(epoch FROM min(at))::float8 AS at
FROM job_history WHERE job_id = ANY($1::uuid[]) AND kind = 'started'
GROUP BY job_id
"""

PICKUP = """
SELECT extract(epoch FROM e.at - j.created_at)::float8 AS latency_s
FROM jobs j JOIN job_history e ON e.job_id = j.id AND e.kind = 'started'
WHERE j.id = ANY($1::uuid[])
"""

PROGRESS = """
SELECT count(*) AS events, extract(epoch FROM max(at) - min(at))::float8 AS span_s
FROM job_history WHERE job_id = $1 AND kind = 'progress'
"""

OWN_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"

RUN_TIME = """
SELECT extract(epoch FROM max(at) FILTER (WHERE kind = 'succeeded')
                        - min(at) FILTER (WHERE kind = 'started'))::float8 AS run_s
FROM job_history WHERE job_id = $1
"""


@dataclass(frozen=True)
class Span:
    """A batch from its first `started` to its last `succeeded` event."""

    seconds: float
    succeeded: int


class JobClient:
    """Creates and cancels jobs as the server does, and waits for them, reading Postgres."""

    def __init__(
        self, pool: asyncpg.Pool, redis: ArqRedis, names: queue.Names, submitter: Submitter
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._names = names
        self._submitter = submitter

    @property
    def submitter(self) -> Submitter:
        """What the server creates jobs with (batches and dependencies included)."""
        return self._submitter

    @property
    def pool(self) -> asyncpg.Pool:
        """The bench's own pool (its connections are left out of CPU readings)."""
        return self._pool

    async def submit(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        queue_name: str = "default",
        max_attempts: int = 1,
    ) -> uuid.UUID:
        """One job, through the single-job path (`POST /jobs` without the HTTP)."""
        submitted = await self._submitter.submit(request(task, args, queue_name, max_attempts))
        assert submitted is not None
        job_id: uuid.UUID = submitted.row["id"]
        return job_id

    async def submit_many(
        self,
        task: str,
        count: int,
        args: dict[str, Any] | None = None,
        queue_name: str = "default",
    ) -> list[uuid.UUID]:
        """`count` jobs, a transaction per thousand (`POST /jobs/batch` without the HTTP)."""
        ids: list[uuid.UUID] = []
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            rows = await self._submitter.submit_many([request(task, args, queue_name)] * size)
            ids.extend(row["id"] for row in rows)
        return ids

    async def cancel_waiting(self, ids: Sequence[uuid.UUID]) -> int:
        """Cancel waiting jobs as `POST /jobs/{id}/cancel` does, batched: commit, then publish.

        Returns how many were cancelled.
        """
        cancelled = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await jobs.cancel_all_waiting(conn, job_ids=chunk, tenant=TENANT)
            await queue.publish_events(self._redis, self._names, map(event_json, rows))
            cancelled += len(rows)
        return cancelled

    async def own_backends(self) -> set[int]:
        """The Postgres backend pids of the bench's own pool."""
        return {row["pid"] for row in await self._pool.fetch(OWN_BACKENDS, APPLICATION_NAME)}

    async def wait_finished(self, ids: Sequence[uuid.UUID], within_s: float) -> None:
        """Wait until every job is terminal."""
        deadline = time.monotonic() + within_s
        while (done := await self._pool.fetchval(FINISHED, ids, TERMINAL_STATUSES)) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {len(ids)} jobs finished in {within_s:g}s")
            await asyncio.sleep(0.1)

    async def span(self, ids: Sequence[uuid.UUID]) -> Span:
        row = await self._pool.fetchrow(SPAN, ids)
        assert row is not None
        return Span(row["last_end"] - row["first_start"], row["succeeded"])

    async def pickup_latencies(self, ids: Sequence[uuid.UUID]) -> list[float]:
        """Seconds from each job's `created_at` to its `started` event."""
        return [row["latency_s"] for row in await self._pool.fetch(PICKUP, ids)]

    async def started_at(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float]:
        """Each job's first `started` event, as Unix time."""
        rows = await self._pool.fetch(STARTED_AT, ids)
        return {row["job_id"]: row["at"] for row in rows}

    async def progress(self, job_id: uuid.UUID) -> tuple[int, float]:
        """How many progress events a job has, and the seconds from the first to the last."""
        row = await self._pool.fetchrow(PROGRESS, job_id)
        assert row is not None
        return row["events"], row["span_s"] or 0.0

    async def result(self, job_id: uuid.UUID) -> Any:
        """What the job's task returned."""
        return await self._pool.fetchval("SELECT result FROM jobs WHERE id = $1", job_id)

    async def run_time(self, job_id: uuid.UUID) -> float:
        """Seconds from the job's `started` event to its `succeeded` event."""
        run_s = await self._pool.fetchval(RUN_TIME, job_id)
        if run_s is None:
            raise RuntimeError(f"job {job_id} did not succeed")
        return float(run_s)


def request(
    task: str, args: dict[str, Any] | None, queue_name: str, max_attempts: int = 1
) -> JobRequest:
    return JobRequest(
        task=task,
        args=args or {},
        queue=queue_name,
        max_attempts=max_attempts,
        timeout_s=600.0,
        tenant=TENANT,
    )
