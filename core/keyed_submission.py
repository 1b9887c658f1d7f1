"""Submitting a job whose task has an overflow strategy for its concurrency key.

`queue` needs nothing here: the claim makes such a job wait. The other strategies decide
at submit time, under the key's lock (the one every claim of the key tries), so what they
see of the key's jobs cannot change until they commit:

- `cancel_newest`: the key has `max_per_key` jobs running or waiting already: refuse the
  new one, 409 naming them.
- `cancel_in_progress`: cancel the key's oldest jobs so that with the new one the key holds
  `max_per_key`; a running one is asked to stop (a `log` event says why, then its worker
  records `cancelled`), a waiting one is cancelled at once. The new job starts when the
  slot frees.
- `keep_latest`: cancel every waiting job of the key; the newest is the one that waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from tidings.core import queue
from tidings.core.concurrency_keys import KeyStrategy, unscoped_key
from tidings.core.db import fairness, jobs
from tidings.core.db.pool import Connection
from tidings.core.errors import Conflict
from tidings.core.events import event_json
from tidings.core.submission import JobRequest, Submitted, Submitter, existing_job

log = structlog.get_logger("tidings.submission")


@dataclass(frozen=True)
class Superseded:
    """What a strategy did to the key's other jobs: the events of the waiting ones it
    cancelled and of the running ones it asked to stop."""

    # Records, or dicts on a caller's connection (`core/db/foreign.py`).
    cancelled: Sequence[asyncpg.Record | Mapping[str, Any]] = ()
    stopping: Sequence[asyncpg.Record | Mapping[str, Any]] = ()

    @property
    def events(self) -> list[asyncpg.Record | Mapping[str, Any]]:
        return [*self.cancelled, *self.stopping]

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return [row["job_id"] for row in self.events]


async def submitted_before(db: Connection, request: JobRequest) -> asyncpg.Record | None:
    """The job the request's idempotency key already names (409 if for another body).
    Asked before a strategy acts: a retried `cancel_newest` submission would otherwise be
    refused because of its own first job."""
    if request.idempotency_key is None:
        return None
    found = await jobs.get_by_idempotency_key(
        db, tenant=request.tenant, key=request.idempotency_key
    )
    return None if found is None else await existing_job(db, request)


async def apply_strategy(conn: Connection, request: JobRequest, job_id: uuid.UUID) -> Superseded:
    """Apply the request's key strategy for the new job `job_id`, in `conn`'s transaction,
    under the key's lock (held until it ends); `Conflict` when `cancel_newest` refuses."""
    key = request.keys.concurrency_key
    assert key is not None and request.keys.max_per_key is not None
    strategy = request.keys.key_strategy
    reason: dict[str, Any] = {"reason": str(strategy), "superseded_by": str(job_id)}
    await fairness.lock_key(conn, key=key)
    held = await fairness.key_jobs(conn, key=key)
    if strategy == KeyStrategy.CANCEL_NEWEST and len(held) >= request.keys.max_per_key:
        raise key_full(key, held)
    if strategy == KeyStrategy.CANCEL_IN_PROGRESS:
        excess = held[: max(0, len(held) + 1 - request.keys.max_per_key)]
        stopping = await fairness.supersede_running(
            conn,
            job_ids=[row["id"] for row in excess if row["status"] == "running"],
            message="cancel requested: a newer job of its concurrency key replaces it",
            data=reason,
        )
        cancelled = await fairness.cancel_superseded(
            conn,
            job_ids=[row["id"] for row in excess if row["status"] != "running"],
            message="a newer job of its concurrency key replaces it",
            data=reason,
        )
        return Superseded(cancelled, stopping)
    if strategy == KeyStrategy.KEEP_LATEST:
        cancelled = await fairness.cancel_superseded(
            conn,
            job_ids=[row["id"] for row in held if row["status"] != "running"],
            message="a newer job of its concurrency key replaces it",
            data=reason,
        )
        return Superseded(cancelled)
    return Superseded()


async def submit_keyed(submitter: Submitter, request: JobRequest) -> Submitted:
    """Create the job after applying its key's strategy; return the existing job for a used
    idempotency key, as `Submitter.submit` does. `submitter` enqueues and publishes it."""
    job_id = uuid.uuid4()
    try:
        async with submitter.pool.acquire() as conn, conn.transaction():
            previous = await submitted_before(conn, request)
            if previous is not None:
                return Submitted(previous, created=False)
            superseded = await apply_strategy(conn, request, job_id)
            row = await jobs.insert_job(conn, request.new_job(job_id))
            assert row is not None  # only a cron slot can be refused, and this names none
    except asyncpg.UniqueViolationError:
        return Submitted(await submitter.existing(request), created=False)
    await _announce(submitter.redis, submitter.names, superseded)
    await submitter.enqueue_committed([row])
    return Submitted(row, created=True)


def key_full(key: str, held: list[asyncpg.Record]) -> Conflict:
    """The 409 of `cancel_newest`: the key's jobs that are in the way."""
    running = [str(row["id"]) for row in held if row["status"] == "running"]
    waiting = [str(row["id"]) for row in held if row["status"] != "running"]
    return Conflict(
        f"concurrency key {unscoped_key(key)!r} is at its limit; the job was not created",
        {
            "reason": "cancel_newest",
            "concurrency_key": unscoped_key(key),
            "running_job_id": running[0] if running else None,
            "running": running,
            "waiting": waiting,
        },
        code="concurrency_key_full",
    )


async def _announce(redis: ArqRedis, names: queue.Names, superseded: Superseded) -> None:
    """Publish the strategy's events and tell workers to stop the jobs it replaced."""
    if not superseded.events:
        return
    try:
        await queue.publish_events(redis, names, map(event_json, superseded.events))
        for row in superseded.stopping:
            await redis.publish(names.cancel_channel, str(row["job_id"]))
    except (RedisError, OSError) as exc:
        # The events are stored; a worker's heartbeat finds the cancel requests in Postgres.
        log.warning("keys.announce_failed", jobs=len(superseded.events), error=repr(exc))
