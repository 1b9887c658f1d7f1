"""Statements on concurrency keys and rate buckets, one function each.

The claim itself enforces keys, rate limits and the round robin (migration 0009); these
are what submissions with an overflow strategy, the job and queue views, the metrics and
the worker's waiting tokens ask of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from tidings.core.db.pool import Connection, Db
from tidings.core.serialization import dumps_str

_WAITING = "('queued', 'retrying')"

# The same lock the claim tries for a key: a submission that holds it sees the key's jobs
# as no claim can change them.
_LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtext('tidings.key:' || $1))"

# The latest event of each of these jobs, announced as the database's own cascades are
# (`worker/cascade.py`): a worker publishes it once the caller's transaction commits.
_ANNOUNCE_ON_COMMIT = """
SELECT cascade_notice(j, e) FROM jobs j JOIN job_events e ON e.job_id = j.id AND e.seq = j.seq
WHERE j.id = ANY($1::uuid[])
"""

# A key's running and waiting jobs: running first (oldest start first), then waiting by age.
_KEY_JOBS = f"""
SELECT id, status, attempt FROM jobs
WHERE concurrency_key = $1 AND (status = 'running' OR status IN {_WAITING})
ORDER BY status = 'running' DESC, started_at, created_at, id
"""

_EVENT_FIELDS = """event.*, job.run_at AS job_run_at, job.queue AS job_queue,
       job.task AS job_task, job.tenant AS job_tenant, job.batch_id AS job_batch"""

# Waiting jobs cancelled because a newer job of their key replaces them.
_CANCEL_SUPERSEDED = f"""
WITH job AS (
    UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
           cancel_requested_at = now(), updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status IN {_WAITING}
 RETURNING *
),
event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt, message, data)
    SELECT id, seq, 'cancelled', status, attempt, $2, $3::text::jsonb FROM job
    RETURNING *
)
SELECT {_EVENT_FIELDS} FROM event JOIN job ON job.id = event.job_id
"""

# Running jobs asked to stop because a newer job of their key replaces them: the request
# is noted in their history (a `log` event with the reason); their worker is told and
# records `cancelled` when the task has stopped.
_SUPERSEDE_RUNNING = f"""
WITH job AS (
    UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()),
           seq = seq + 1, updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'running'
 RETURNING *
),
event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt, message, data)
    SELECT id, seq, 'log', status, attempt, $2, $3::text::jsonb FROM job
    RETURNING *
)
SELECT {_EVENT_FIELDS} FROM event JOIN job ON job.id = event.job_id
"""

# Why a waiting job has not started, as far as its key and its rate bucket say.
_WAITING_STATE = f"""
SELECT
    (SELECT count(*) FROM jobs r WHERE r.concurrency_key = $1 AND r.status = 'running')
        AS key_running,
    (SELECT LEAST(b.burst::float8,
                  b.tokens + extract(epoch FROM clock_timestamp() - b.refilled_at) * b.per_s)
       FROM rate_buckets b WHERE b.key = $2) AS tokens,
    (SELECT count(*) FROM jobs w
      WHERE w.rate_key = $2 AND w.status IN {_WAITING} AND w.run_at <= now()
        AND (w.priority > $3
             OR (w.priority = $3 AND (w.run_at, w.created_at, w.id) < ($4, $5, $6))))
        AS rate_ahead
"""

# Per queue, the keys with jobs running or waiting (of one tenant, or everyone's).
_KEY_STATS = f"""
SELECT queue, concurrency_key, max(max_per_key) AS max_per_key,
       count(*) FILTER (WHERE status = 'running') AS running,
       count(*) FILTER (WHERE status IN {_WAITING}) AS waiting
FROM jobs
WHERE concurrency_key IS NOT NULL AND (status = 'running' OR status IN {_WAITING})
  AND ($1::text IS NULL OR tenant = $1)
GROUP BY queue, concurrency_key
ORDER BY queue, count(*) FILTER (WHERE status = 'running') DESC, concurrency_key
LIMIT $2
"""

# Per queue, the rate buckets its waiting jobs (of one tenant, or everyone's) draw on.
_RATE_STATS = f"""
SELECT w.queue, b.key, b.burst, b.per_s, b.limited, w.waiting,
       LEAST(b.burst::float8,
             b.tokens + extract(epoch FROM clock_timestamp() - b.refilled_at) * b.per_s)
           AS tokens
FROM (SELECT queue, rate_key, count(*) AS waiting FROM jobs
       WHERE rate_key IS NOT NULL AND status IN {_WAITING} AND ($1::text IS NULL OR tenant = $1)
       GROUP BY queue, rate_key) AS w
JOIN rate_buckets b ON b.key = w.rate_key
ORDER BY w.queue, b.key
LIMIT $2
"""

# Due jobs per queue whose concurrency key is at its limit.
_WAITING_FOR_KEY = f"""
SELECT w.queue, sum(w.due)::bigint AS waiting
FROM (SELECT queue, concurrency_key, max(max_per_key) AS max_per_key, count(*) AS due
        FROM jobs
       WHERE concurrency_key IS NOT NULL AND status IN {_WAITING} AND run_at <= now()
       GROUP BY queue, concurrency_key) AS w
WHERE (SELECT count(*) FROM jobs r
        WHERE r.concurrency_key = w.concurrency_key AND r.status = 'running')
      >= COALESCE(w.max_per_key, 1)
GROUP BY w.queue
"""

_RATE_LIMITED_TOTAL = "SELECT coalesce(sum(limited), 0)::bigint FROM rate_buckets"

# For tokens whose own job is still waiting: whether its key is full, and what its rate
# bucket holds now (`tokens`, None before first use) for the due jobs of its rate key
# before it (`rate_ahead`).
_TOKEN_WAITS = f"""
SELECT j.id, j.attempt, j.run_at, j.rate_per_s,
       j.concurrency_key IS NOT NULL
         AND (SELECT count(*) FROM jobs r
               WHERE r.concurrency_key = j.concurrency_key AND r.status = 'running')
             >= COALESCE(j.max_per_key, 1) AS key_full,
       (SELECT LEAST(b.burst::float8,
                     b.tokens + extract(epoch FROM clock_timestamp() - b.refilled_at) * b.per_s)
          FROM rate_buckets b WHERE b.key = j.rate_key) AS tokens,
       CASE WHEN j.rate_key IS NOT NULL THEN
           (SELECT count(*) FROM jobs w
             WHERE w.rate_key = j.rate_key AND w.status IN {_WAITING} AND w.run_at <= now()
               AND (w.priority > j.priority OR (w.priority = j.priority
                    AND (w.run_at, w.created_at, w.id) < (j.run_at, j.created_at, j.id))))
       END AS rate_ahead
FROM jobs j
WHERE j.id = ANY($1::uuid[]) AND j.status IN {_WAITING}
"""


async def lock_key(conn: Connection, *, key: str) -> None:
    """Hold `key` until the transaction ends: no claim takes a slot of it meanwhile."""
    await conn.execute(_LOCK_KEY, key)


# Skipping rows a claim holds: a claim pass may upsert several turns, and a plain DELETE
# locking them in its own order could deadlock with it.
_PRUNE_TURNS = """
DELETE FROM fair_turns WHERE (queue, tenant, fair_key) IN (
    SELECT queue, tenant, fair_key FROM fair_turns
    WHERE served_at < now() - make_interval(secs => $1)
    FOR UPDATE SKIP LOCKED)
"""


async def prune_turns(db: Db, *, idle_s: float) -> int:
    """Forget the turns of groups not served for `idle_s`; how many. A forgotten group
    comes first when it waits again, where its old turn would have put it anyway."""
    status = await db.execute(_PRUNE_TURNS, idle_s)
    return int(status.split()[-1])


async def announce_on_commit(conn: Connection, *, job_ids: Sequence[uuid.UUID]) -> None:
    """Have a worker publish these jobs' latest events when `conn`'s transaction commits."""
    if job_ids:
        await conn.execute(_ANNOUNCE_ON_COMMIT, list(job_ids))


async def key_jobs(db: Db, *, key: str) -> list[asyncpg.Record]:
    """The key's running jobs (oldest first), then its waiting jobs (oldest first)."""
    return list(await db.fetch(_KEY_JOBS, key))


async def cancel_superseded(
    db: Db, *, job_ids: Sequence[uuid.UUID], message: str, data: dict[str, Any]
) -> list[asyncpg.Record]:
    """Cancel these waiting jobs with `message` and `data` on their event; the events."""
    return list(await db.fetch(_CANCEL_SUPERSEDED, list(job_ids), message, dumps_str(data)))


async def supersede_running(
    db: Db, *, job_ids: Sequence[uuid.UUID], message: str, data: dict[str, Any]
) -> list[asyncpg.Record]:
    """Ask these running jobs to stop, noting why in their history; the `log` events."""
    return list(await db.fetch(_SUPERSEDE_RUNNING, list(job_ids), message, dumps_str(data)))


async def waiting_state(
    db: Db,
    *,
    concurrency_key: str | None,
    rate_key: str | None,
    priority: int,
    run_at: datetime,
    created_at: datetime,
    job_id: uuid.UUID,
) -> asyncpg.Record:
    """`key_running` (the key's running jobs), `tokens` (the rate bucket's, now; None
    before its first use) and `rate_ahead` (due jobs of the rate key before this one, in
    claim order, ties by id: jobs submitted together share their times)."""
    row = await db.fetchrow(
        _WAITING_STATE, concurrency_key, rate_key, priority, run_at, created_at, job_id
    )
    assert row is not None  # scalar subqueries always make their one row
    return row


async def key_stats(db: Db, *, tenant: str | None, limit: int) -> list[asyncpg.Record]:
    """Per queue, keys with running or waiting jobs (`running`, `waiting`, `max_per_key`)."""
    return list(await db.fetch(_KEY_STATS, tenant, limit))


async def rate_stats(db: Db, *, tenant: str | None, limit: int) -> list[asyncpg.Record]:
    """Per queue, the rate buckets waiting jobs draw on and their tokens now."""
    return list(await db.fetch(_RATE_STATS, tenant, limit))


async def waiting_for_key(db: Db) -> list[asyncpg.Record]:
    """Due jobs per queue whose concurrency key is at its limit (`queue`, `waiting`)."""
    return list(await db.fetch(_WAITING_FOR_KEY))


async def rate_limited_total(db: Db) -> int:
    """Claims refused by a rate bucket, over every bucket's life."""
    total: int = await db.fetchval(_RATE_LIMITED_TOTAL)
    return total


async def token_waits(db: Db, *, job_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """For waiting jobs among `job_ids`: `run_at`, `key_full`, and for a rate-limited one
    `rate_per_s`, `tokens` (its bucket's now) and `rate_ahead` (due jobs before it)."""
    return list(await db.fetch(_TOKEN_WAITS, list(job_ids)))
