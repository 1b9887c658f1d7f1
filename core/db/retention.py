"""Statements of retention: which finished jobs are due to go, deleting them in batches.

A finished job is kept for its task's `retain_s` (the `defaults` of its `tasks` row) or,
without one, for its status's retention. Jobs fall into classes of one (task, status),
each with one cutoff; the `jobs_finished` index (migration 0006) orders each class by
`finished_at`, so a class's expired jobs are one index range from its start. The classes
come from the finished jobs themselves (a skip scan of that index, one probe per task), so
a job is pruned even if its task's registry row were gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from tidings.core.db.pool import Db

# The statuses a job ends in; the predicate of the `jobs_finished` index, word for word.
# Each scan of a class repeats it: `status = c.status` alone does not let the planner use
# a partial index, so without it every class would be a scan of the whole table.
FINISHED = "status IN ('succeeded', 'failed', 'cancelled')"

# The distinct tasks of finished jobs, read from `jobs_finished` one probe per task.
_FINISHED_TASKS = f"""
finished_tasks (task) AS (
    SELECT min(task) FROM jobs WHERE {FINISHED}
    UNION ALL
    SELECT (SELECT min(j.task) FROM jobs j WHERE j.{FINISHED} AND j.task > f.task)
    FROM finished_tasks f WHERE f.task IS NOT NULL
)"""

# Every (task, status) class with the moment before which its jobs expire. $1 and $2 are
# the finished statuses and their retentions in seconds; a task's own `retain_s` wins.
_CLASSES = f"""
WITH RECURSIVE {_FINISHED_TASKS},
classes AS (
    SELECT f.task, s.status,
           now() - make_interval(
               secs => coalesce((t.defaults ->> 'retain_s')::float8, s.retain_s)) AS cutoff
    FROM finished_tasks f
    LEFT JOIN tasks t ON t.name = f.task
    CROSS JOIN unnest($1::text[], $2::float8[]) AS s (status, retain_s)
    WHERE f.task IS NOT NULL
)"""

# One batch: up to $3 expired jobs, oldest first within a class, that no one else holds
# (SKIP LOCKED: a manual retry, or another pruner), then as many of those as keep their
# events within $4 (a job's `seq` is its number of events); the first always goes, so a
# job with more events than that goes alone. The rows locked and left are free at commit.
# A job's events go with it by the foreign keys' ON DELETE CASCADE, wherever they are
# stored (`job_events`, and the runs of progress events); measured, that is as fast as
# deleting them here first (docs/decisions.md). `events` counts events, not rows.
_PRUNE_BATCH = f"""
{_CLASSES},
chosen AS (
    SELECT j.id, j.seq
    FROM classes c
    CROSS JOIN LATERAL (
        SELECT id, seq FROM jobs
        WHERE task = c.task AND status = c.status AND finished_at < c.cutoff AND {FINISHED}
        ORDER BY finished_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS j
    LIMIT $3
),
doomed AS (
    SELECT id FROM (
        SELECT id, sum(seq) OVER w AS upto, row_number() OVER w AS n FROM chosen
        WINDOW w AS (ROWS UNBOUNDED PRECEDING)
    ) AS running
    WHERE upto <= $4 OR n = 1
),
gone AS (
    DELETE FROM jobs WHERE id = ANY (ARRAY(SELECT id FROM doomed)) RETURNING status, seq
)
SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       coalesce(sum(seq), 0) AS events
FROM gone
"""

# What a prune would delete now, per status: jobs, their events, the oldest finish.
_EXPIRED_BY_STATUS = f"""
{_CLASSES}
SELECT c.status, count(*) AS jobs, sum(j.seq) AS events, min(j.finished_at) AS oldest
FROM classes c
JOIN jobs j ON j.task = c.task AND j.status = c.status AND j.finished_at < c.cutoff
    AND j.{FINISHED}
GROUP BY c.status
ORDER BY c.status
"""

# Seconds since the oldest finished job still stored finished (NULL: there is none), by
# Postgres' clock: one probe per class.
_OLDEST_FINISHED_AGE = f"""
WITH RECURSIVE {_FINISHED_TASKS}
SELECT extract(epoch FROM now() - min(o.finished_at))::float8
FROM finished_tasks f
CROSS JOIN unnest($1::text[]) AS s (status)
CROSS JOIN LATERAL (
    SELECT finished_at FROM jobs
    WHERE task = f.task AND status = s.status AND {FINISHED}
    ORDER BY finished_at
    LIMIT 1
) AS o
WHERE f.task IS NOT NULL
"""


# Finished batches whose every member retention has deleted: their counts and log go too.
_DROP_EMPTIED_BATCHES = """
DELETE FROM batches WHERE id IN (
    SELECT b.id FROM batches b
    WHERE b.finished_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id)
    ORDER BY b.finished_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
"""


async def drop_emptied_batches(db: Db, *, limit: int) -> int:
    """Delete up to `limit` finished batches none of whose members is left; how many."""
    status: str = await db.execute(_DROP_EMPTIED_BATCHES, limit)
    return int(status.split()[-1])


async def prune_batch(
    db: Db, *, retain_s: Mapping[str, float], max_jobs: int, max_events: int
) -> asyncpg.Record:
    """Delete up to `max_jobs` expired jobs (fewer if their events would pass `max_events`)
    with their events; `retain_s` maps each finished status to its retention. The counts
    deleted: `succeeded`, `failed`, `cancelled` (jobs) and `events`."""
    row = await db.fetchrow(
        _PRUNE_BATCH, list(retain_s), list(retain_s.values()), max_jobs, max_events
    )
    assert row is not None  # an aggregate always has its one row
    return row


async def expired_by_status(db: Db, *, retain_s: Mapping[str, float]) -> list[asyncpg.Record]:
    """Per status with expired jobs: `jobs`, `events` and the `oldest` finish among them."""
    return list(await db.fetch(_EXPIRED_BY_STATUS, list(retain_s), list(retain_s.values())))


async def oldest_finished_age_s(db: Db, *, statuses: Sequence[str]) -> float | None:
    """Seconds since the oldest stored job of `statuses` finished; None if there is none."""
    age_s: float | None = await db.fetchval(_OLDEST_FINISHED_AGE, list(statuses))
    return age_s
