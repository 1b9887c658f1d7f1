"""The trends of the dashboard: jobs per minute by outcome, and wait and run times, of the
jobs that finished in a recent window, overall and per task and queue.

One statement over the newest finished jobs of the window, read from `jobs_finished_recent`
(tenant, finished_at) and never more than `ROW_CAP` of them: past the cap the answer starts
later than the window (`covered_from`) rather than reading an unbounded range. No rolling
aggregate is kept, so nothing is added to a job's own transitions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tidings.core.db.pool import Db
from tidings.core.db.search import resolve, where_of
from tidings.core.job_filter import JobFilter

# Finished jobs read per answer at most: ~14 jobs/s sustained over an hour.
ROW_CAP = 50_000
# Tasks and queues listed per answer at most, the busiest first.
TOP_NAMES = 20

_TIMES = """
    count(*) AS jobs,
    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_s) AS wait_p50_s,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY wait_s) AS wait_p95_s,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY run_s) AS run_p50_s,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY run_s) AS run_p95_s
"""


def _statement(where_sql: str, window: str, cap: str, top: str) -> str:
    return f"""
WITH recent AS (
    SELECT task, queue, status, finished_at,
           extract(epoch FROM finished_at - started_at)::float8 AS run_s,
           extract(epoch FROM started_at - run_at)::float8 AS wait_s
      FROM jobs
     WHERE {where_sql} AND finished_at IS NOT NULL
       AND finished_at > now() - make_interval(secs => {window})
     ORDER BY finished_at DESC
     LIMIT {cap}
),
minutes AS (
    SELECT minute FROM generate_series(
        date_trunc('minute', now() - make_interval(secs => {window})) + interval '1 minute',
        date_trunc('minute', now()), interval '1 minute') AS minute
)
SELECT
    now() AS until,
    (SELECT count(*) FROM recent) AS read,
    (SELECT min(finished_at) FROM recent) AS oldest,
    (SELECT jsonb_agg(jsonb_build_object(
                'minute', m.minute,
                'succeeded', coalesce(c.succeeded, 0),
                'failed', coalesce(c.failed, 0),
                'cancelled', coalesce(c.cancelled, 0)) ORDER BY m.minute)
       FROM minutes m
       LEFT JOIN (SELECT date_trunc('minute', finished_at) AS minute,
                         count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                         count(*) FILTER (WHERE status = 'failed') AS failed,
                         count(*) FILTER (WHERE status = 'cancelled') AS cancelled
                    FROM recent GROUP BY 1) c ON c.minute = m.minute) AS per_minute,
    (SELECT to_jsonb(o) FROM (SELECT {_TIMES} FROM recent) o) AS overall,
    (SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.jobs DESC, t.task), '[]'::jsonb)
       FROM (SELECT task, {_TIMES} FROM recent GROUP BY task
              ORDER BY count(*) DESC, task LIMIT {top}) t) AS tasks,
    (SELECT coalesce(jsonb_agg(to_jsonb(q) ORDER BY q.jobs DESC, q.queue), '[]'::jsonb)
       FROM (SELECT queue, {_TIMES} FROM recent GROUP BY queue
              ORDER BY count(*) DESC, queue LIMIT {top}) q) AS queues
"""


async def trends(
    db: Db, *, tenant: str, job_filter: JobFilter, window_s: int, cap: int = ROW_CAP
) -> dict[str, Any]:
    """The tenant's trends over the last `window_s` seconds, for the jobs `job_filter`
    matches: `per_minute` (each minute of the window, oldest first), `overall`, `tasks`,
    `queues`, and `covered_from` (later than the window's start when `cap` was reached)."""
    where = where_of(tenant, await resolve(db, tenant=tenant, job_filter=job_filter))
    window = where.next_place(window_s)
    limit = where.next_place(cap)
    top = where.next_place(TOP_NAMES)
    row = await db.fetchrow(_statement(where.sql(), window, limit, top), *where.params)
    assert row is not None  # an aggregate always has its one row
    until: datetime = row["until"]
    capped = row["read"] >= cap
    return {
        "window_s": window_s,
        "until": until,
        "covered_from": row["oldest"] if capped else None,
        "jobs_read": row["read"],
        "row_cap": cap,
        "per_minute": row["per_minute"],
        "overall": row["overall"],
        "tasks": row["tasks"],
        "queues": row["queues"],
    }
