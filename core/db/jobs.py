"""Statements on `jobs`, one function each; every change of a job commits with its event row.

Each transition is one statement: a CTE updates the job (bumping its `seq`) and the
outer INSERT appends the matching `job_events` row, so the pair is atomic and the
per-job seq stays gapless without an explicit transaction. Callers pass parameters by
name; the `$n` of a statement are known only to the function beside it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from tidings.core import serialization
from tidings.core.db.pool import Connection, Db
from tidings.core.db.workers import LIVE_WORKER, UP_FOR_SILENCE
from tidings.core.events import EventKind
from tidings.core.model import Status


@dataclass(frozen=True)
class NewJob:
    """The columns a submission sets on a new job (the rest take their defaults)."""

    id: uuid.UUID
    task: str
    args: dict[str, Any]
    args_hash: str
    queue: str
    priority: int
    max_attempts: int
    timeout_s: float
    idempotency_key: str | None
    tenant: str
    run_at: datetime | None
    schedule_key: str | None = None
    # `waiting` when it has dependencies (settled by `core.dependencies` once linked).
    status: str = Status.QUEUED
    batch_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None
    depends_on: list[uuid.UUID] | None = None
    on_dependency_failure: str = "fail"
    # Fair sharing (migration 0009, `core/concurrency_keys.py`): the job's concurrency key
    # and its limit, its round-robin group within the tenant, its rate key and bucket.
    concurrency_key: str | None = None
    max_per_key: int | None = None
    fair_key: str = ""
    rate_key: str | None = None
    rate_per_s: float | None = None
    rate_burst: int | None = None


def _transition(
    update: str,
    kind: EventKind,
    *,
    attempt: str = "attempt",
    message: str = "NULL::text",
    data: str = "NULL::jsonb",
    kind_sql: str | None = None,
) -> str:
    """One transition statement; the event's kind is `kind`, or the SQL `kind_sql` when it
    depends on the row (a retried job with open dependencies waits)."""
    return f"""
WITH job AS ({update} RETURNING *),
event AS (
    INSERT INTO job_events
        (job_id, seq, kind, status, attempt, progress_current, progress_total, message, data)
    SELECT id, seq, {kind_sql or repr(str(kind))}, status, {attempt}, NULL, NULL, {message}, {data}
      FROM job
    RETURNING *
)
SELECT event.*, job.run_at AS job_run_at, job.queue AS job_queue, job.task AS job_task,
       job.tenant AS job_tenant, job.batch_id AS job_batch
FROM event JOIN job ON job.id = event.job_id
"""


# `$n` is the n-th field of `NewJob`, by construction.
_NEW_JOB_COLUMNS = [column.name for column in fields(NewJob)]
_ARGS_INDEX = _NEW_JOB_COLUMNS.index("args")
# `args` is bound as JSON text, not through the connection's jsonb codec: the statement
# also runs on a caller's own connection (a transactional submit), whose codecs are not
# tidings' (`foreign.py`).
_NEW_JOB_PLACES = {"run_at": "COALESCE(${n}, now())", "args": "${n}::text::jsonb"}
_NEW_JOB_VALUES = [
    _NEW_JOB_PLACES.get(name, "${n}").format(n=n) for n, name in enumerate(_NEW_JOB_COLUMNS, 1)
]
_INSERT_JOB = f"""
WITH job AS (
    INSERT INTO jobs ({", ".join(_NEW_JOB_COLUMNS)}, seq)
    VALUES ({", ".join(_NEW_JOB_VALUES)}, 1)
    ON CONFLICT (schedule_key) DO NOTHING
    RETURNING *
),
event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt)
    SELECT id, 1, status, status, attempt FROM job
    RETURNING at
)
SELECT job.*, event.at AS event_at FROM job, event
"""

# Many plain submissions in one statement (the server's group commit): one array per
# column, one row each. A row that hits a unique index (an idempotency key already used,
# even by an earlier row of the same call) is skipped, not an error, so one submission
# cannot fail the others; its caller looks the existing job up instead.
# The array type of each column `insert_jobs` writes (a cron slot's `schedule_key` never
# goes through it); `$n` is the n-th entry, by construction.
_COLUMN_ARRAYS = {
    "id": "uuid[]",
    "task": "text[]",
    "args": "jsonb[]",
    "args_hash": "text[]",
    "queue": "text[]",
    "priority": "smallint[]",
    "max_attempts": "integer[]",
    "timeout_s": "float8[]",
    "idempotency_key": "text[]",
    "tenant": "text[]",
    "run_at": "timestamptz[]",
    "batch_id": "uuid[]",
    "parent_id": "uuid[]",
    "on_dependency_failure": "text[]",
    "concurrency_key": "text[]",
    "max_per_key": "integer[]",
    "fair_key": "text[]",
    "rate_key": "text[]",
    "rate_per_s": "float8[]",
    "rate_burst": "integer[]",
}
_FAIR_SHARING_COLUMNS = "concurrency_key, max_per_key, fair_key, rate_key, rate_per_s, rate_burst"
_UNNEST = ", ".join(f"${n}::{array}" for n, array in enumerate(_COLUMN_ARRAYS.values(), 1))
_INSERT_JOBS = f"""
WITH job AS (
    INSERT INTO jobs (id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
                      idempotency_key, tenant, run_at, batch_id, parent_id,
                      on_dependency_failure, seq, {_FAIR_SHARING_COLUMNS})
    SELECT id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
           idempotency_key, tenant, COALESCE(run_at, now()), batch_id, parent_id,
           on_dependency_failure, 1,
           {_FAIR_SHARING_COLUMNS}
    FROM unnest({_UNNEST}) AS r({", ".join(_COLUMN_ARRAYS)})
    ON CONFLICT DO NOTHING
    RETURNING *
),
event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt)
    SELECT id, 1, 'queued', status, attempt FROM job
    RETURNING job_id, at
)
SELECT job.*, event.at AS event_at FROM job JOIN event ON event.job_id = job.id
"""

_ANNOUNCE = "SELECT pg_notify($1, $2)"

# A result-cache hit: the new job is born succeeded, with both of its events.
_INSERT_CACHED_JOB = """
WITH job AS (
    INSERT INTO jobs (id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
                      idempotency_key, tenant, status, result, cached_from,
                      started_at, finished_at, seq, batch_id, parent_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'succeeded', $11, $12, now(), now(), 2,
            $13, $14)
    RETURNING *
),
queued AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt)
    SELECT id, 1, 'queued', 'queued', attempt FROM job
),
done AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt, message, data)
    SELECT id, 2, 'succeeded', status, attempt, 'served from cache',
           jsonb_build_object('result', result, 'cached_from', cached_from)
      FROM job
    RETURNING at
)
SELECT job.*, done.at AS event_at FROM job, done
"""

# Only a job that ran is a source: a cache hit is born succeeded "now", and serving from
# hits would name the wrong source and stretch the TTL for as long as requests keep coming.
_FIND_CACHED_RESULT = """
SELECT id, result FROM jobs
WHERE tenant = $1 AND task = $2 AND args_hash = $3 AND status = 'succeeded'
  AND cached_from IS NULL AND finished_at > now() - make_interval(secs => $4)
ORDER BY finished_at DESC
LIMIT 1
"""

# Each claimed job's `started` event, plus what the worker needs to run it: up to $4 jobs.
_CLAIM_JOBS = """
SELECT (c.claimed_event).*,
       (c.claimed_job).id, (c.claimed_job).task, (c.claimed_job).args,
       (c.claimed_job).queue, (c.claimed_job).timeout_s, (c.claimed_job).max_attempts,
       (c.claimed_job).task AS job_task, (c.claimed_job).queue AS job_queue,
       (c.claimed_job).tenant AS job_tenant, (c.claimed_job).batch_id AS job_batch,
       (c.claimed_job).on_dependency_failure,
       (c.claimed_job).concurrency_key AS job_concurrency_key
FROM claim_jobs($1, $2, $3, $4, $5, $6) AS c
"""

_RUNNING_ATTEMPT = "WHERE id = $1 AND attempt = $2 AND status = 'running'"
# How long the attempt that just ended ran, for the run-time histogram.
_RUN_S = "extract(epoch FROM now() - started_at)::float8"


# Many progress/log events of one running attempt at once: the job row is updated once
# (seq moves by the number of events; progress takes the last progress event's values)
# and the events, seq base+1 … base+n, are stored as one `job_event_runs` row holding the
# notes as the worker encoded them (`core.events.NOTE_FIELDS`; see migration 0007). One
# statement, however many events; it returns one row (no row: the attempt is no longer
# running), from which the writer rebuilds the events it just wrote (they share one `at`)
# instead of reading them back.
_APPEND_EVENTS = """
WITH job AS (
    UPDATE jobs SET seq = seq + $3, updated_at = now(),
           progress_current = CASE WHEN $4 THEN $5 ELSE progress_current END,
           progress_total = CASE WHEN $4 THEN $6 ELSE progress_total END,
           progress_message = CASE WHEN $4 THEN $7 ELSE progress_message END
     WHERE id = $1 AND attempt = $2 AND status = 'running'
 RETURNING id, seq - $3 AS base, status, attempt, task, queue, tenant, batch_id,
           clock_timestamp() AS at
),
run AS (
    INSERT INTO job_event_runs (job_id, first_seq, last_seq, status, attempt, at, notes)
    SELECT job.id, job.base + 1, job.base + $3, job.status, job.attempt, job.at, $8
      FROM job
)
SELECT * FROM job
"""

_SUCCEED = _transition(
    f"""UPDATE jobs SET status = 'succeeded', seq = seq + 1, result = $3, error = NULL,
           finished_at = now(), updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.SUCCEEDED,
    data=f"jsonb_build_object('result', $3::jsonb, 'run_s', {_RUN_S})",
)

_FAIL = _transition(
    f"""UPDATE jobs SET status = 'failed', seq = seq + 1, error = $3,
           finished_at = now(), updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.FAILED,
    message="$3::jsonb ->> 'message'",
    data=f"jsonb_build_object('error', $3::jsonb, 'run_s', {_RUN_S})",
)

# The failed attempt is recorded on the event; the job moves on to the next attempt.
_RETRY = _transition(
    f"""UPDATE jobs SET status = 'retrying', seq = seq + 1, error = $3,
           attempt = attempt + 1, run_at = now() + make_interval(secs => $4),
           worker_id = NULL, updated_at = now()
       {_RUNNING_ATTEMPT} AND cancel_requested_at IS NULL""",
    EventKind.RETRYING,
    attempt="attempt - 1",
    message="$3::jsonb ->> 'message'",
    data=f"""jsonb_build_object('error', $3::jsonb, 'next_attempt', attempt,
                               'retry_at', run_at, 'delay_s', $4::float8, 'run_s', {_RUN_S})""",
)

_CANCEL_RUNNING = _transition(
    f"""UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
           updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.CANCELLED,
    message="'cancelled while running'",
    data=f"jsonb_build_object('run_s', {_RUN_S})",
)

_CANCEL_WAITING = _transition(
    """UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
           cancel_requested_at = now(), updated_at = now()
       WHERE id = $1 AND tenant = $2 AND status IN ('waiting', 'queued', 'retrying')""",
    EventKind.CANCELLED,
    message="'cancelled before it started'",
)

# A parent that waits for its children: each child becomes a dependency (its row locked
# first, so a child that ends meanwhile waits for this commit and then releases the
# parent); the attempt gives up its worker slot and waits, or is queued again at once when
# every child has already ended. The attempt is not used up: the task runs again when it
# is released and finds its children's results.
_LINK_CHILDREN = """
WITH kids AS (SELECT id FROM jobs WHERE parent_id = $1 ORDER BY id FOR UPDATE),
edges AS (
    INSERT INTO job_dependencies (depends_on, job_id) SELECT id, $1 FROM kids
    ON CONFLICT DO NOTHING
)
UPDATE jobs SET has_dependents = true FROM kids WHERE jobs.id = kids.id AND NOT has_dependents
"""
_OPEN_CHILDREN = """(SELECT count(*) FROM jobs c
     WHERE c.parent_id = jobs.id AND c.status NOT IN ('succeeded', 'failed', 'cancelled'))"""
_WAIT_FOR_CHILDREN = _transition(
    f"""UPDATE jobs SET seq = seq + 1, worker_id = NULL, updated_at = now(),
           status = CASE WHEN {_OPEN_CHILDREN} > 0 THEN 'waiting' ELSE 'queued' END,
           pending_dependencies = {_OPEN_CHILDREN}, run_at = now()
       {_RUNNING_ATTEMPT} AND cancel_requested_at IS NULL""",
    EventKind.WAITING,
    message="'waiting for its children'",
    data=f"jsonb_build_object('reason', 'children', 'run_s', {_RUN_S})",
    kind_sql="status",
)

# Every waiting member of a batch at once, in one statement: the triggers that settle
# dependents run after it, when no member waits any more, so a member is cancelled, not
# failed because the member it depends on was cancelled a moment before it.
_CANCEL_BATCH_WAITING = _transition(
    """UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
           cancel_requested_at = now(), updated_at = now()
       WHERE batch_id = $1 AND tenant = $2 AND status IN ('waiting', 'queued', 'retrying')""",
    EventKind.CANCELLED,
    message="'batch cancelled'",
)
_REQUEST_CANCEL_BATCH = """
UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
WHERE batch_id = $1 AND tenant = $2 AND status = 'running'
RETURNING id
"""

_REQUEST_CANCEL = """
UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
WHERE id = $1 AND tenant = $2 AND status = 'running'
RETURNING *
"""

# The dependencies of a job that have not ended, and those that ended without success.
_OPEN_DEPENDENCIES = """(SELECT count(*)
      FROM job_dependencies d JOIN jobs dep ON dep.id = d.depends_on
     WHERE d.job_id = jobs.id AND dep.status NOT IN ('succeeded', 'failed', 'cancelled'))"""
_FAILED_DEPENDENCY = """EXISTS (SELECT 1
      FROM job_dependencies d JOIN jobs dep ON dep.id = d.depends_on
     WHERE d.job_id = jobs.id AND dep.status IN ('failed', 'cancelled'))"""

# A job whose dependencies are open again (they were retried too) waits for them; one with
# a dependency still failed under policy `fail` cannot be retried (it would fail at once).
_MANUAL_RETRY = _transition(
    f"""UPDATE jobs SET seq = seq + 1, attempt = attempt + 1,
           status = CASE WHEN {_OPEN_DEPENDENCIES} > 0 THEN 'waiting' ELSE 'queued' END,
           pending_dependencies = {_OPEN_DEPENDENCIES},
           max_attempts = GREATEST(max_attempts, attempt + 1), run_at = now(),
           result = NULL, error = NULL, started_at = NULL, finished_at = NULL,
           cancel_requested_at = NULL, worker_id = NULL, updated_at = now()
       WHERE id = $1 AND tenant = $2 AND status IN ('failed', 'cancelled')
         AND NOT (on_dependency_failure = 'fail' AND {_FAILED_DEPENDENCY})""",
    EventKind.QUEUED,
    message="'manual retry'",
    data="jsonb_build_object('reason', 'manual retry')",
    kind_sql="status",
)


# Running jobs whose worker is gone or silent for longer than $1 seconds.
_LOST = f"""WHERE status = 'running' AND {UP_FOR_SILENCE.format(silence="$1")} AND NOT EXISTS (
           SELECT 1 FROM workers w
            WHERE w.id = jobs.worker_id AND w.heartbeat_at > now() - make_interval(secs => $1))"""

# A lost attempt counts: a job that keeps killing its workers ends up failed.
_REQUEUE_LOST = _transition(
    f"""UPDATE jobs SET status = 'queued', seq = seq + 1, attempt = attempt + 1,
           run_at = now(), worker_id = NULL, started_at = NULL, updated_at = now()
       {_LOST} AND attempt < max_attempts""",
    EventKind.REQUEUED,
    message="'worker lost'",
    data="jsonb_build_object('reason', 'worker_lost')",
)

_FAIL_LOST = _transition(
    f"""UPDATE jobs SET status = 'failed', seq = seq + 1, finished_at = now(), updated_at = now(),
           error = jsonb_build_object('type', 'WorkerLost', 'traceback', NULL,
               'message', 'the worker running the last attempt stopped responding')
       {_LOST} AND attempt >= max_attempts""",
    EventKind.FAILED,
    message="'worker lost'",
    data="jsonb_build_object('error', error)",
)

# A stopping worker hands back what it could not finish; that is not the job's fault,
# so the attempt it lost does not use up its budget.
_REQUEUE_OWN = _transition(
    """UPDATE jobs SET status = 'queued', seq = seq + 1, attempt = attempt + 1,
           max_attempts = GREATEST(max_attempts, attempt + 1), run_at = now(),
           worker_id = NULL, started_at = NULL, updated_at = now()
       WHERE worker_id = $1 AND status = 'running'""",
    EventKind.REQUEUED,
    message="'worker stopped'",
    data="jsonb_build_object('reason', 'worker_shutdown')",
)

# Attempts Postgres says a worker holds that it never got: the connection broke after the
# claim committed, before its reply arrived. They never ran, so the attempt is not counted.
_REQUEUE_UNCLAIMED = _transition(
    """UPDATE jobs SET status = 'queued', seq = seq + 1, attempt = attempt + 1,
           max_attempts = GREATEST(max_attempts, attempt + 1), run_at = now(),
           worker_id = NULL, started_at = NULL, updated_at = now()
       WHERE worker_id = $1 AND status = 'running'
         AND (id, attempt) IN (SELECT * FROM unnest($2::uuid[], $3::int[]))""",
    EventKind.REQUEUED,
    message="'claim reply lost'",
    data="jsonb_build_object('reason', 'claim_reply_lost')",
)

_GET_JOB = "SELECT * FROM jobs WHERE id = $1 AND tenant = $2"

# Jobs per status for the dashboard. Each count stops at $2 rows, so a long history costs
# at most $2 entries of the jobs_status index per status, not a scan of the whole table.
_COUNT_BY_STATUS = """
SELECT s.status,
       (SELECT count(*) FROM (SELECT 1 FROM jobs j
                              WHERE j.tenant = $1 AND j.status = s.status LIMIT $2) AS capped)
           AS count
FROM unnest($3::text[]) AS s (status)
"""

# What a waiting job's ETA is estimated from: the task's recent run time, the jobs due
# ahead of it in its queue, and the live consumers of that queue.
_ETA_INPUTS = f"""
SELECT
    (SELECT avg(extract(epoch FROM recent.finished_at - recent.started_at))
       FROM (SELECT finished_at, started_at FROM jobs
              WHERE task = $1 AND status = 'succeeded' AND cached_from IS NULL
              ORDER BY finished_at DESC LIMIT 20) AS recent) AS run_s,
    (SELECT count(*) FROM jobs w
      WHERE w.queue = $2 AND w.tenant = $7
        AND w.status IN ('queued', 'retrying') AND w.run_at <= now()
        AND (w.priority > $3 OR (w.priority = $3 AND (w.run_at, w.created_at) < ($4, $5))))
        AS ahead,
    (SELECT coalesce(sum(concurrency), 0) FROM workers
      WHERE $2 = ANY(queues) AND {LIVE_WORKER.format(within="$6")}
        AND (tasks IS NULL OR $1 = ANY(tasks))) AS slots
"""
_JOB_POSITION = "SELECT status, seq FROM jobs WHERE id = $1"
_GET_BY_IDEMPOTENCY_KEY = "SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2"
_IS_WAITING = """
SELECT run_at FROM jobs WHERE id = $1 AND attempt = $2 AND status IN ('queued', 'retrying')
"""

# A queue's due jobs in the claim's order (`jobs_waiting`): the ones claimed next.
_FRONT_OF_QUEUE = """
SELECT id, attempt, queue, run_at FROM jobs
WHERE status IN ('queued', 'retrying') AND queue = $1 AND run_at <= now()
ORDER BY priority DESC, run_at, created_at
LIMIT $2
"""
_WAITING_JOBS = """
SELECT id, attempt, queue, run_at FROM jobs
WHERE status IN ('queued', 'retrying') AND queue = $1
"""


# --- creating jobs --------------------------------------------------------------------------


def _values(job: NewJob) -> list[Any]:
    """`_INSERT_JOB`'s parameters: the job's fields in order (not `astuple`, which copies
    the args deeply)."""
    values = [getattr(job, name) for name in _NEW_JOB_COLUMNS]
    values[_ARGS_INDEX] = serialization.dumps(job.args).decode()
    return values


async def insert_job(db: Db, job: NewJob) -> asyncpg.Record | None:
    """The new job with its `queued` event (`event_at`); None if its cron slot is taken."""
    return await db.fetchrow(_INSERT_JOB, *_values(job))


async def insert_all(conn: Connection, new_jobs: Sequence[NewJob]) -> list[asyncpg.Record]:
    """Every job, one statement each, on `conn` (the caller's transaction makes it all or
    nothing); a used idempotency key raises `UniqueViolationError`."""
    return list(await conn.fetchmany(_INSERT_JOB, [_values(job) for job in new_jobs]))


async def insert_jobs(db: Db, new_jobs: Sequence[NewJob]) -> list[asyncpg.Record]:
    """Many jobs in one statement; a job whose idempotency key is taken is skipped, not an
    error (its caller looks the existing one up)."""
    columns = [[getattr(job, name) for job in new_jobs] for name in _COLUMN_ARRAYS]
    return list(await db.fetch(_INSERT_JOBS, *columns))


async def announce(db: Db, *, channel: str, payload: str) -> None:
    """`pg_notify`: delivered to the channel's listeners when the transaction commits."""
    await db.execute(_ANNOUNCE, channel, payload)


async def insert_cached_job(
    db: Db, job: NewJob, *, result: Any, cached_from: uuid.UUID
) -> asyncpg.Record | None:
    """A job born succeeded with `result` of the job `cached_from` (a result-cache hit)."""
    row: asyncpg.Record | None = await db.fetchrow(
        _INSERT_CACHED_JOB,
        job.id,
        job.task,
        job.args,
        job.args_hash,
        job.queue,
        job.priority,
        job.max_attempts,
        job.timeout_s,
        job.idempotency_key,
        job.tenant,
        result,
        cached_from,
        job.batch_id,
        job.parent_id,
    )
    return row


async def find_cached_result(
    db: Db, *, tenant: str, task: str, args_hash: str, ttl_s: float
) -> asyncpg.Record | None:
    """The newest job that ran `task` on these args and succeeded within `ttl_s`."""
    return await db.fetchrow(_FIND_CACHED_RESULT, tenant, task, args_hash, ttl_s)


# --- claiming and running -------------------------------------------------------------------


async def claim_jobs(
    db: Db,
    *,
    queue: str,
    worker_id: str,
    limits: dict[str, int],
    count: int,
    tasks: Sequence[str],
    due_for_s: float = 0.0,
) -> list[asyncpg.Record]:
    """Claim up to `count` of the best due jobs of `queue` among those of `tasks` (the
    worker's own), leaving out jobs due for less than `due_for_s`: each row is its
    `started` event and what the worker needs to run it."""
    return list(
        await db.fetch(_CLAIM_JOBS, queue, worker_id, limits, count, list(tasks), due_for_s)
    )


async def append_events(
    db: Db,
    *,
    job_id: uuid.UUID,
    attempt: int,
    count: int,
    progress: tuple[float, float | None, str | None] | None,
    items: bytes,
) -> asyncpg.Record | None:
    """Append `count` progress/log events (`items`, the notes as UTF-8 JSON array bytes) to
    a running attempt; `progress` is the last progress event's (current, total, message),
    if any. None when the attempt no longer runs."""
    current, total, message = progress if progress is not None else (None, None, None)
    return await db.fetchrow(
        _APPEND_EVENTS, job_id, attempt, count, progress is not None, current, total, message, items
    )


async def succeed(db: Db, *, job_id: uuid.UUID, attempt: int, result: Any) -> asyncpg.Record | None:
    """Running attempt → succeeded; its event, or None if the attempt no longer runs."""
    return await db.fetchrow(_SUCCEED, job_id, attempt, result)


async def fail(db: Db, *, job_id: uuid.UUID, attempt: int, error: Any) -> asyncpg.Record | None:
    """Running attempt → failed for good."""
    return await db.fetchrow(_FAIL, job_id, attempt, error)


async def retry(
    db: Db, *, job_id: uuid.UUID, attempt: int, error: Any, delay_s: float
) -> asyncpg.Record | None:
    """Running attempt → retrying: the next attempt is due in `delay_s` (None if a cancel
    was requested meanwhile)."""
    return await db.fetchrow(_RETRY, job_id, attempt, error, delay_s)


async def cancel_running(db: Db, *, job_id: uuid.UUID, attempt: int) -> asyncpg.Record | None:
    """Running attempt → cancelled."""
    return await db.fetchrow(_CANCEL_RUNNING, job_id, attempt)


async def wait_for_children(
    conn: Connection, *, job_id: uuid.UUID, attempt: int
) -> asyncpg.Record | None:
    """Running attempt → waiting for the job's children (queued at once if they all
    ended); its event, or None if the attempt no longer runs or a cancel was requested.
    `conn` must be in a transaction."""
    await conn.execute(_LINK_CHILDREN, job_id)
    return await conn.fetchrow(_WAIT_FOR_CHILDREN, job_id, attempt)


async def waiting_run_at(db: Db, *, job_id: uuid.UUID, attempt: int) -> datetime | None:
    """When the attempt is due, if it still waits."""
    run_at: datetime | None = await db.fetchval(_IS_WAITING, job_id, attempt)
    return run_at


async def front_of_queue(db: Db, *, queue: str, limit: int) -> list[asyncpg.Record]:
    """The first `limit` due jobs of `queue`, in the order the claim takes them."""
    return list(await db.fetch(_FRONT_OF_QUEUE, queue, limit))


async def waiting_job_pages(
    pool: asyncpg.Pool, *, queue: str, page: int
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """Every waiting job of `queue`, `page` at a time, read from one snapshot through a
    cursor: however long the backlog, no more than a page is in memory at once. Close it
    (`aclosing`) to give its connection back at once when the reader stops early."""
    async with pool.acquire() as conn, conn.transaction():
        cursor = await conn.cursor(_WAITING_JOBS, queue)
        while rows := await cursor.fetch(page):
            yield rows


# --- what callers ask of a job --------------------------------------------------------------


async def cancel_waiting(db: Db, *, job_id: uuid.UUID, tenant: str) -> asyncpg.Record | None:
    """A waiting job → cancelled at once; its event, or None if it does not wait."""
    return await db.fetchrow(_CANCEL_WAITING, job_id, tenant)


async def cancel_all_waiting(
    conn: Connection, *, job_ids: Sequence[uuid.UUID], tenant: str
) -> list[asyncpg.Record]:
    """`cancel_waiting` for each job, pipelined on `conn`; the events of those cancelled."""
    return list(await conn.fetchmany(_CANCEL_WAITING, [(job_id, tenant) for job_id in job_ids]))


async def cancel_batch(
    conn: Connection, *, batch_id: uuid.UUID, tenant: str
) -> tuple[list[asyncpg.Record], list[uuid.UUID]]:
    """Cancel every waiting member of a batch and mark its running ones for cancellation
    (`conn` in a transaction): the events of those cancelled, the ids of those running."""
    events = list(await conn.fetch(_CANCEL_BATCH_WAITING, batch_id, tenant))
    running = [row["id"] for row in await conn.fetch(_REQUEST_CANCEL_BATCH, batch_id, tenant)]
    return events, running


async def request_cancel(db: Db, *, job_id: uuid.UUID, tenant: str) -> asyncpg.Record | None:
    """Mark a running job for cancellation; the job, or None if it does not run."""
    return await db.fetchrow(_REQUEST_CANCEL, job_id, tenant)


async def request_cancel_all(
    conn: Connection, *, job_ids: Sequence[uuid.UUID], tenant: str
) -> list[asyncpg.Record]:
    """`request_cancel` for each job, pipelined on `conn`; the jobs that run."""
    return list(await conn.fetchmany(_REQUEST_CANCEL, [(job_id, tenant) for job_id in job_ids]))


async def manual_retry(db: Db, *, job_id: uuid.UUID, tenant: str) -> asyncpg.Record | None:
    """A failed or cancelled job → queued as a new attempt; its event, or None."""
    return await db.fetchrow(_MANUAL_RETRY, job_id, tenant)


async def manual_retry_all(
    conn: Connection, *, job_ids: Sequence[uuid.UUID], tenant: str
) -> list[asyncpg.Record]:
    """`manual_retry` for each job, pipelined on `conn`; the events of those retried."""
    return list(await conn.fetchmany(_MANUAL_RETRY, [(job_id, tenant) for job_id in job_ids]))


async def get_job(db: Db, *, job_id: uuid.UUID, tenant: str) -> asyncpg.Record | None:
    """The tenant's job, or None (another tenant's job is None too)."""
    return await db.fetchrow(_GET_JOB, job_id, tenant)


async def get_by_idempotency_key(db: Db, *, tenant: str, key: str | None) -> asyncpg.Record | None:
    """The tenant's job created with idempotency key `key`."""
    return await db.fetchrow(_GET_BY_IDEMPOTENCY_KEY, tenant, key)


async def job_position(db: Db, *, job_id: uuid.UUID) -> asyncpg.Record | None:
    """The job's status and last seq."""
    return await db.fetchrow(_JOB_POSITION, job_id)


async def count_by_status(db: Db, *, tenant: str, cap: int) -> list[asyncpg.Record]:
    """The tenant's jobs per status, each count stopping at `cap`."""
    return list(await db.fetch(_COUNT_BY_STATUS, tenant, cap, list(Status)))


async def eta_inputs(
    db: Db,
    *,
    task: str,
    queue: str,
    priority: int,
    run_at: datetime,
    created_at: datetime,
    live_within_s: float,
    tenant: str,
) -> asyncpg.Record:
    """What a waiting job's ETA is estimated from: `run_s`, `ahead` (the tenant's own jobs
    due before it: another tenant's backlog is not the caller's to see), `slots`."""
    row = await db.fetchrow(
        _ETA_INPUTS, task, queue, priority, run_at, created_at, live_within_s, tenant
    )
    assert row is not None  # an aggregate always has its one row
    return row


# --- recovery -------------------------------------------------------------------------------


async def requeue_lost(db: Db, *, silence_s: float) -> list[asyncpg.Record]:
    """Re-queue the running jobs of workers silent for `silence_s` (attempts left)."""
    return list(await db.fetch(_REQUEUE_LOST, silence_s))


async def fail_lost(db: Db, *, silence_s: float) -> list[asyncpg.Record]:
    """Fail the running jobs of silent workers that have no attempt left."""
    return list(await db.fetch(_FAIL_LOST, silence_s))


async def requeue_own(db: Db, *, worker_id: str) -> list[asyncpg.Record]:
    """Hand back a stopping worker's running jobs (the lost attempt is not counted)."""
    return list(await db.fetch(_REQUEUE_OWN, worker_id))


async def requeue_unclaimed(
    db: Db, *, worker_id: str, attempts: Sequence[tuple[uuid.UUID, int]]
) -> list[asyncpg.Record]:
    """Hand back attempts held by `worker_id` whose claim it never heard back from."""
    ids = [job_id for job_id, _ in attempts]
    numbers = [attempt for _, attempt in attempts]
    return list(await db.fetch(_REQUEUE_UNCLAIMED, worker_id, ids, numbers))
