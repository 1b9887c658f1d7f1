"""Cancel or retry many jobs in one request: chosen ids, or every failed job of a filter.

The transitions are the single-job ones (`jobs.cancel_waiting`, `jobs.request_cancel`,
`jobs.manual_retry`), pipelined on one connection in one transaction; what they publish
and enqueue goes out after commit in one Redis round trip. A request is bounded
(`MAX_JOBS`) and idempotent: each statement only moves a job out of a status it then no
longer has, so sending a request twice acts on each job once, and the second answer says
why the rest were skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from tidings.core import queue
from tidings.core.db import jobs, search
from tidings.core.events import event_json
from tidings.core.job_filter import JobFilter
from tidings.core.model import Status

log = structlog.get_logger("tidings.bulk")

# Ids per request, and failed jobs a filter retries per request: one pipelined transaction
# of this many statements stays well under a second.
MAX_JOBS = 1000


class Action(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"


class Outcome(StrEnum):
    CANCELLED = "cancelled"  # it was waiting: cancelled now
    CANCEL_REQUESTED = "cancel_requested"  # it runs: its worker has been told
    RETRIED = "retried"  # a new attempt is queued (or waits for its dependencies)
    SKIPPED = "skipped"  # its status does not allow the action
    NOT_FOUND = "not_found"  # no job of the caller's has this id


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one job, and the status it has now (None when not found)."""

    id: uuid.UUID
    outcome: Outcome
    status: str | None


@dataclass(frozen=True)
class Backends:
    """Where the jobs live and whom to tell."""

    pool: asyncpg.Pool
    redis: ArqRedis
    names: queue.Names


async def cancel(
    backends: Backends, *, tenant: str, job_ids: Sequence[uuid.UUID]
) -> list[ItemOutcome]:
    """Cancel each job: waiting ones at once, running ones by telling their worker."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    async with backends.pool.acquire() as conn, conn.transaction():
        events = await jobs.cancel_all_waiting(conn, job_ids=ids, tenant=tenant)
        cancelled = {event["job_id"] for event in events}
        rest = [job_id for job_id in ids if job_id not in cancelled]
        running = await jobs.request_cancel_all(conn, job_ids=rest, tenant=tenant) if rest else []
        requested = {row["id"] for row in running}
        statuses = await search.statuses_of(conn, tenant=tenant, job_ids=ids)
    try:
        async with backends.redis.pipeline(transaction=False) as pipe:
            queue.add_events(pipe, backends.names, [event_json(event) for event in events])
            for job_id in requested:
                pipe.publish(backends.names.cancel_channel, str(job_id))
            await pipe.execute()
    except (RedisError, OSError) as exc:
        # Subscribers recover the events from Postgres; workers find the cancel requests
        # there on their next heartbeat.
        log.warning("bulk.publish_failed", action="cancel", error=repr(exc))
    done = {job_id: Outcome.CANCELLED for job_id in cancelled}
    done.update({job_id: Outcome.CANCEL_REQUESTED for job_id in requested})
    return _outcomes(ids, done, statuses)


async def retry(
    backends: Backends, *, tenant: str, job_ids: Sequence[uuid.UUID]
) -> list[ItemOutcome]:
    """Retry each failed or cancelled job as a new attempt."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    async with backends.pool.acquire() as conn, conn.transaction():
        events = await jobs.manual_retry_all(conn, job_ids=ids, tenant=tenant)
        statuses = await search.statuses_of(conn, tenant=tenant, job_ids=ids)
    tokens = [
        queue.Token(event["job_id"], event["attempt"], event["job_queue"], event["job_run_at"])
        for event in events
        if event["status"] == Status.QUEUED  # a waiting one gets its token on release
    ]
    try:
        await queue.enqueue_fresh(
            backends.redis, backends.names, tokens, [event_json(event) for event in events]
        )
    except (RedisError, OSError) as exc:
        # The reconciler enqueues what Postgres says is queued and Redis does not hold.
        log.warning("bulk.enqueue_failed", action="retry", error=repr(exc))
    done = {event["job_id"]: Outcome.RETRIED for event in events}
    return _outcomes(ids, done, statuses)


async def failed_matching(
    backends: Backends,
    *,
    tenant: str,
    job_filter: JobFilter,
    failed_before: datetime | None,
) -> tuple[list[uuid.UUID], bool]:
    """The oldest `MAX_JOBS` failed jobs `job_filter` matches (that failed before
    `failed_before`, if given), and whether more match."""
    resolved = await search.resolve(backends.pool, tenant=tenant, job_filter=job_filter)
    ids = await search.failed_ids(
        backends.pool,
        tenant=tenant,
        resolved=resolved,
        finished_before=failed_before,
        limit=MAX_JOBS + 1,
    )
    return ids[:MAX_JOBS], len(ids) > MAX_JOBS


def _outcomes(
    ids: list[uuid.UUID], done: dict[uuid.UUID, Outcome], statuses: dict[uuid.UUID, str]
) -> list[ItemOutcome]:
    outcomes = []
    for job_id in ids:
        status = statuses.get(job_id)
        if job_id in done:
            outcome = done[job_id]
        elif status is None:
            outcome = Outcome.NOT_FOUND
        else:
            outcome = Outcome.SKIPPED
        outcomes.append(ItemOutcome(job_id, outcome, status))
    return outcomes
