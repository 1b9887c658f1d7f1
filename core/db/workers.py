"""Statements on `workers`: registration, heartbeats, who is alive, and queues' load.

A worker is live while its heartbeat is younger than `live_within_s(heartbeat_s)`; every
reader of liveness (the queues view, ETAs, the metrics) uses that one definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tidings.core.db.pool import Db

# Heartbeats a worker may miss before it no longer counts as live.
MISSED_HEARTBEATS = 3

# SQL of "this workers row is live", given the window as a parameter: `{within}` is a
# placeholder such as "$2" for the window in seconds.
LIVE_WORKER = "heartbeat_at > now() - make_interval(secs => {within})"

# No worker can heartbeat while Postgres is down: silence counts only from when Postgres
# (re)started, so a restart never makes the live workers look lost. `{silence}` is the
# placeholder of the silence in seconds.
UP_FOR_SILENCE = "pg_postmaster_start_time() < now() - make_interval(secs => {silence})"


def live_within_s(heartbeat_s: float) -> float:
    """How recent a heartbeat must be for its worker to count as live."""
    return MISSED_HEARTBEATS * heartbeat_s


_REGISTER_WORKER = """
INSERT INTO workers (id, hostname, pid, queues, concurrency, tasks)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
"""
# The heartbeat says whether the worker's row was still there (a reaper removes the rows
# of workers it took for lost), and collects cancel requests for its running jobs.
_HEARTBEAT = """
WITH beat AS (UPDATE workers SET heartbeat_at = now() WHERE id = $1 RETURNING id),
held AS (SELECT id, attempt, cancel_requested_at FROM jobs
          WHERE worker_id = $1 AND status = 'running')
SELECT EXISTS (SELECT 1 FROM beat) AS registered,
       ARRAY(SELECT id FROM held WHERE cancel_requested_at IS NOT NULL) AS cancel_requested,
       ARRAY(SELECT id FROM held ORDER BY id) AS held_ids,
       ARRAY(SELECT attempt FROM held ORDER BY id) AS held_attempts
"""
_DEREGISTER_WORKER = "DELETE FROM workers WHERE id = $1"
_DELETE_SILENT_WORKERS = f"""
DELETE FROM workers
WHERE heartbeat_at < now() - make_interval(secs => $1) AND {UP_FOR_SILENCE.format(silence="$1")}
"""
_LIST_WORKERS = f"""
SELECT w.*, (SELECT count(*) FROM jobs j
              WHERE j.worker_id = w.id AND j.status = 'running'
                AND ($2::text IS NULL OR j.tenant = $2)) AS running,
       {LIVE_WORKER.format(within="$1")} AS live
FROM workers w ORDER BY w.started_at
"""

# Per queue: waiting and running jobs (of one tenant, or of everyone when $1 is NULL), the
# oldest due one, and the live consumers of the queue.
_QUEUE_STATS = f"""
WITH load AS (
    SELECT queue,
           count(*) FILTER (WHERE status IN ('queued', 'retrying') AND run_at <= now()) AS due,
           count(*) FILTER (WHERE status IN ('queued', 'retrying') AND run_at > now())
               AS scheduled,
           count(*) FILTER (WHERE status = 'running') AS running,
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE status IN ('queued', 'retrying') AND run_at <= now()))::float8
               AS oldest_due_s
    FROM jobs
    WHERE ($1::text IS NULL OR tenant = $1) AND status IN ('queued', 'retrying', 'running')
    GROUP BY queue
),
consumers AS (
    SELECT unnest(queues) AS queue, count(*) AS workers, sum(concurrency) AS slots
    FROM workers WHERE {LIVE_WORKER.format(within="$2")}
    GROUP BY 1
),
-- Due jobs of a task that no live worker of their queue has registered (a worker row
-- without a task list predates them and claims every task).
without_worker AS (
    SELECT d.queue, sum(d.due) AS due
    FROM (SELECT queue, task, count(*) AS due FROM jobs
           WHERE ($1::text IS NULL OR tenant = $1)
             AND status IN ('queued', 'retrying') AND run_at <= now()
           GROUP BY queue, task) AS d
    WHERE NOT EXISTS (
        SELECT 1 FROM workers w
         WHERE {LIVE_WORKER.format(within="$2")} AND d.queue = ANY(w.queues)
           AND (w.tasks IS NULL OR d.task = ANY(w.tasks)))
    GROUP BY d.queue
)
SELECT coalesce(l.queue, c.queue) AS queue,
       coalesce(l.due, 0) AS due, coalesce(l.scheduled, 0) AS scheduled,
       coalesce(l.running, 0) AS running, l.oldest_due_s,
       coalesce(c.workers, 0) AS workers, coalesce(c.slots, 0) AS slots,
       coalesce(n.due, 0)::bigint AS without_worker
FROM load l FULL JOIN consumers c ON c.queue = l.queue
LEFT JOIN without_worker n ON n.queue = coalesce(l.queue, c.queue)
ORDER BY 1
"""


async def register_worker(
    db: Db,
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    queues: Sequence[str],
    concurrency: int,
    tasks: Sequence[str],
) -> None:
    """Add the worker's row with the tasks it runs (or refresh its heartbeat)."""
    await db.execute(
        _REGISTER_WORKER, worker_id, hostname, pid, list(queues), concurrency, list(tasks)
    )


async def heartbeat(db: Db, *, worker_id: str) -> asyncpg.Record:
    """Beat: `registered` (whether the row was there), `cancel_requested`, and the running
    attempts this worker holds (`held_ids`, `held_attempts`)."""
    row = await db.fetchrow(_HEARTBEAT, worker_id)
    assert row is not None  # a SELECT of aggregates always has its row
    return row


async def deregister_worker(db: Db, *, worker_id: str) -> None:
    """Remove the worker's row."""
    await db.execute(_DEREGISTER_WORKER, worker_id)


async def delete_silent_workers(db: Db, *, silence_s: float) -> None:
    """Remove the rows of workers silent for `silence_s` (counted from Postgres' start)."""
    await db.execute(_DELETE_SILENT_WORKERS, silence_s)


async def list_workers(
    db: Db, *, live_within_s: float, tenant: str | None = None
) -> list[asyncpg.Record]:
    """Every registered worker, oldest first, whether it is live, and how many jobs (of
    `tenant`, or of everyone) it runs."""
    return list(await db.fetch(_LIST_WORKERS, live_within_s, tenant))


async def queue_stats(db: Db, *, tenant: str | None, live_within_s: float) -> list[asyncpg.Record]:
    """Per queue: due, scheduled and running jobs of `tenant` (None: everyone's), the
    oldest due one's age, and the queue's live workers and slots."""
    return list(await db.fetch(_QUEUE_STATS, tenant, live_within_s))
