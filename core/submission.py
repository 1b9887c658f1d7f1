"""Creating jobs: one or a batch, with idempotency keys, cron slots and the result cache.

The job row and its `queued` event commit first; only then is a token put on the ARQ
queue and the event published. If Redis is away at that moment the job is still safe:
the reconciler enqueues waiting jobs from Postgres.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from tidings.core import dependencies, queue
from tidings.core.concurrency_keys import KeyedFields
from tidings.core.db import events as job_events
from tidings.core.db import jobs
from tidings.core.db.pool import Connection, Db
from tidings.core.errors import Conflict
from tidings.core.events import EventKind, make_event
from tidings.core.model import Status, iso

log = structlog.get_logger("tidings.submission")

# How many times a submit runs again after losing a deadlock (see `_in_transaction`).
DEADLOCK_ATTEMPTS = 5

# What a job is born as, unless the result cache answers it.
NEW_STATUSES = (Status.QUEUED, Status.WAITING)

# Fields that must match for a repeated idempotency key to name the same submission.
IDEMPOTENT_FIELDS = ("task", "args", "queue", "priority", "max_attempts", "timeout_s")


def batch_key_taken() -> Conflict:
    """The 409 of a batch one of whose idempotency keys names an existing job."""
    return Conflict(
        "an idempotency key in the batch is already used; nothing was submitted",
        {"reason": "the key names another job of this tenant"},
        code="idempotency_conflict",
    )


@dataclass(frozen=True)
class JobRequest:
    """A validated request for one job."""

    task: str
    args: dict[str, Any]
    queue: str
    max_attempts: int
    timeout_s: float
    priority: int = 0
    run_at: datetime | None = None
    idempotency_key: str | None = None
    schedule_key: str | None = None
    tenant: str = "default"
    cache_ttl_s: float | None = None
    # Job ids, or (in a batch) the `ref` of another job of it; resolved by `core.dependencies`.
    depends_on: tuple[str, ...] = ()
    on_dependency_failure: str = "fail"
    ref: str | None = None
    batch_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None
    # Its concurrency key, round-robin group and rate key (`core.concurrency_keys`).
    keys: KeyedFields = field(default_factory=KeyedFields)

    @property
    def args_hash(self) -> str:
        """A digest of the canonical args (sorted keys), for the result cache."""
        return hashlib.sha256(orjson.dumps(self.args, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def new_job(self, job_id: uuid.UUID, depends_on: list[uuid.UUID] | None = None) -> jobs.NewJob:
        """The job row this request creates, with id `job_id` and the ids it depends on."""
        return jobs.NewJob(
            id=job_id,
            task=self.task,
            args=self.args,
            args_hash=self.args_hash,
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout_s=self.timeout_s,
            idempotency_key=self.idempotency_key,
            tenant=self.tenant,
            run_at=self.run_at,
            schedule_key=self.schedule_key,
            status=Status.WAITING if self.depends_on else Status.QUEUED,
            batch_id=self.batch_id,
            parent_id=self.parent_id,
            depends_on=depends_on,
            on_dependency_failure=self.on_dependency_failure,
            **self.keys.columns(),
        )


@dataclass(frozen=True)
class Submitted:
    """The job a request resolved to; `created` is False when an existing job was returned."""

    row: asyncpg.Record
    created: bool


def first_event(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    """The first event (seq 1) of a freshly inserted job row: `queued`, or `waiting` for a
    job with dependencies."""
    batch_id = row.get("batch_id")
    return make_event(
        str(row["id"]),
        row["task"],
        row["queue"],
        row["tenant"],
        None if batch_id is None else str(batch_id),
        1,
        EventKind(row.get("status", Status.QUEUED)),
        Status(row.get("status", Status.QUEUED)),
        row["attempt"],
        None,
        None,
        None,
        None,
        iso(row["event_at"]),
    )


async def insert_job(db: Db, request: JobRequest) -> asyncpg.Record | None:
    """The new job row with its `queued` event, or born succeeded from the result cache;
    None if the cron slot it names is taken. A used idempotency key raises
    `UniqueViolationError`."""
    if request.cache_ttl_s:
        hit = await jobs.find_cached_result(
            db,
            tenant=request.tenant,
            task=request.task,
            args_hash=request.args_hash,
            ttl_s=request.cache_ttl_s,
        )
        if hit is not None:
            return await jobs.insert_cached_job(
                db, request.new_job(uuid.uuid4()), result=hit["result"], cached_from=hit["id"]
            )
    return await jobs.insert_job(db, request.new_job(uuid.uuid4()))


async def insert_planned(
    conn: Connection, requests: Sequence[JobRequest], plan: dependencies.Plan
) -> list[asyncpg.Record]:
    """Insert every job of `requests` on `conn` with the ids and dependencies `plan` gave
    them, and link the dependencies (in the caller's transaction)."""
    new_jobs = [
        request.new_job(job_id, depends_on)
        for request, job_id, depends_on in zip(requests, plan.ids, plan.depends_on, strict=True)
    ]
    if plan.any:
        await dependencies.lock(conn, plan, tenant=requests[0].tenant)
    rows = await jobs.insert_all(conn, new_jobs)
    if plan.any:
        await dependencies.link(conn, plan, tenant=requests[0].tenant)
    return rows


async def existing_job(db: Db, request: JobRequest) -> asyncpg.Record:
    """The job the request's idempotency key names; 409 if it was for another body."""
    existing = await jobs.get_by_idempotency_key(
        db, tenant=request.tenant, key=request.idempotency_key
    )
    if existing is None:  # the key's job vanished between the insert and this read
        raise Conflict("idempotency key is in use; retry the request")
    if any(existing[name] != getattr(request, name) for name in IDEMPOTENT_FIELDS):
        raise Conflict(
            "idempotency key was already used with a different submission",
            {"idempotency_key": request.idempotency_key, "job_id": str(existing["id"])},
            code="idempotency_conflict",
        )
    return existing


class Submitter:
    """Creates jobs in Postgres, then tells Redis."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: ArqRedis,
        names: queue.Names,
        *,
        on_created: Callable[[asyncpg.Record], None] = lambda row: None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._names = names
        self._on_created = on_created

    @property
    def pool(self) -> asyncpg.Pool:
        """Where its jobs are written."""
        return self._pool

    @property
    def redis(self) -> ArqRedis:
        """Where its jobs' tokens go."""
        return self._redis

    @property
    def names(self) -> queue.Names:
        """The namespace's keys and channels."""
        return self._names

    async def submit(self, request: JobRequest) -> Submitted | None:
        """Create the job, or return the one its idempotency key names.

        None means the cron slot it names was already taken by another worker.
        """
        row: asyncpg.Record | None
        try:
            if request.depends_on:
                plan = dependencies.plan([request], in_batch=False)
                [row] = await self._in_transaction(
                    lambda conn: insert_planned(conn, [request], plan)
                )
            else:
                row = await insert_job(self._pool, request)
        except asyncpg.UniqueViolationError:
            return Submitted(await self.existing(request), created=False)
        if row is None:
            return None
        await self.enqueue_committed([row])
        return Submitted(row, created=True)

    async def submit_many(
        self,
        requests: Sequence[JobRequest],
        *,
        before: Callable[[Connection], Awaitable[None]] | None = None,
        after: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> list[asyncpg.Record]:
        """Create every job in one transaction, all or nothing; `before` and `after` run in
        that transaction around the writing of the jobs and their dependencies (a batch
        opens and seals itself there)."""
        plan = dependencies.plan(requests, in_batch=True)

        async def write(conn: Connection) -> list[asyncpg.Record]:
            if before is not None:
                await before(conn)
            written = await insert_planned(conn, requests, plan)
            if after is not None:
                await after(conn)
            return written

        try:
            rows = await self._in_transaction(write)
        except asyncpg.UniqueViolationError:
            raise batch_key_taken() from None
        await self.enqueue_committed(rows)
        return rows

    async def _in_transaction(
        self, write: Callable[[Connection], Awaitable[list[asyncpg.Record]]]
    ) -> list[asyncpg.Record]:
        """`write` in a transaction of its own, again if Postgres chose it as a deadlock's
        victim: linking dependencies locks job rows and (by trigger) a batch's row, which
        a group commit ending several members of that batch may lock the other way round;
        the victim's transaction is rolled back whole, so running it again is safe."""
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await write(conn)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                log.info("submit.deadlock_retried", attempt=attempt)
        raise AssertionError("unreachable")

    async def existing(self, request: JobRequest) -> asyncpg.Record:
        """The job the request's idempotency key names; 409 if it was for another body."""
        return await existing_job(self._pool, request)

    async def enqueue_committed(
        self,
        rows: Sequence[asyncpg.Record],
        contexts: Mapping[uuid.UUID, Mapping[str, Any]] | None = None,
    ) -> None:
        """Count and log committed jobs, then enqueue and publish them in one round trip.

        `contexts` holds, per job id, the log context its submitter had bound (the
        request's `request_id`) when the jobs are written away from it, by a batch.
        """
        for row in rows:
            self._on_created(row)
            fields = {
                "job_id": str(row["id"]),
                "task": row["task"],
                "queue": row["queue"],
                "attempt": row["attempt"],
                "status": row["status"],
            }
            log.info("job.queued", **{**(contexts or {}).get(row["id"], {}), **fields})
        due = [row for row in rows if row["status"] == Status.QUEUED]
        tokens = [
            queue.Token(row["id"], row["attempt"], row["queue"], row["run_at"]) for row in due
        ]
        # A job with dependencies holds no token: it gets one when they end (migration 0008).
        events = [first_event(row) for row in rows if row["status"] in NEW_STATUSES]
        for row in rows:
            if row["status"] not in NEW_STATUSES:  # born finished: a result-cache hit
                events += await job_events.events_after(self._pool, job_id=row["id"], after=0)
        try:
            await queue.enqueue_fresh(self._redis, self._names, tokens, events)
        except (RedisError, OSError) as exc:
            # The jobs are committed; the reconciler enqueues them when Redis is back.
            log.warning("jobs.enqueue_failed", jobs=len(rows), error=repr(exc))
