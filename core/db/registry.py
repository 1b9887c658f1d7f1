"""Named statements on `tasks` and `workers`: what workers offer and who is alive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

UPSERT_TASK = """
INSERT INTO tasks (name, queue, args_schema, defaults, description, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (name) DO UPDATE SET
    queue = EXCLUDED.queue, args_schema = EXCLUDED.args_schema,
    defaults = EXCLUDED.defaults, description = EXCLUDED.description, updated_at = now()
"""

GET_TASK = "SELECT * FROM tasks WHERE name = $1"
LIST_TASKS = "SELECT * FROM tasks ORDER BY name"

REGISTER_WORKER = """
INSERT INTO workers (id, hostname, pid, queues, concurrency)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
"""
# The heartbeat says whether the worker's row was still there (a reaper removes the rows
# of workers it took for lost), and collects cancel requests for its running jobs.
HEARTBEAT = """
WITH beat AS (UPDATE workers SET heartbeat_at = now() WHERE id = $1 RETURNING id),
held AS (SELECT id, attempt, cancel_requested_at FROM jobs
          WHERE worker_id = $1 AND status = 'running')
SELECT EXISTS (SELECT 1 FROM beat) AS registered,
       ARRAY(SELECT id FROM held WHERE cancel_requested_at IS NOT NULL) AS cancel_requested,
       ARRAY(SELECT id FROM held ORDER BY id) AS held_ids,
       ARRAY(SELECT attempt FROM held ORDER BY id) AS held_attempts
"""
DEREGISTER_WORKER = "DELETE FROM workers WHERE id = $1"
LIST_WORKERS = """
SELECT w.*, (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.status = 'running')
           AS running
FROM workers w ORDER BY w.started_at
"""

# Per queue, the tenant's waiting and running jobs, and the live consumers of the queue.
QUEUE_STATS = """
WITH mine AS (
    SELECT queue,
           count(*) FILTER (WHERE status IN ('queued', 'retrying') AND run_at <= now()) AS due,
           count(*) FILTER (WHERE status IN ('queued', 'retrying') AND run_at > now())
               AS scheduled,
           count(*) FILTER (WHERE status = 'running') AS running,
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE status IN ('queued', 'retrying') AND run_at <= now()))::float8
               AS oldest_due_s
    FROM jobs
    WHERE tenant = $1 AND status IN ('queued', 'retrying', 'running')
    GROUP BY queue
),
consumers AS (
    SELECT unnest(queues) AS queue, count(*) AS workers, sum(concurrency) AS slots
    FROM workers WHERE heartbeat_at > now() - make_interval(secs => $2)
    GROUP BY 1
)
SELECT coalesce(m.queue, c.queue) AS queue,
       coalesce(m.due, 0) AS due, coalesce(m.scheduled, 0) AS scheduled,
       coalesce(m.running, 0) AS running, m.oldest_due_s,
       coalesce(c.workers, 0) AS workers, coalesce(c.slots, 0) AS slots
FROM mine m FULL JOIN consumers c ON c.queue = m.queue
ORDER BY 1
"""


async def upsert_tasks(
    conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Record each (name, queue, args_schema, defaults, description) in the registry."""
    await conn.executemany(UPSERT_TASK, rows)


async def get_task(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> asyncpg.Record | None:
    """One task's registry row, or None."""
    return await conn.fetchrow(GET_TASK, name)


async def list_tasks(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every registered task."""
    return list(await conn.fetch(LIST_TASKS))


async def list_workers(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every registered worker, oldest first."""
    return list(await conn.fetch(LIST_WORKERS))
