"""Named statements on `jobs`; every change of a job commits together with its event row.

Each transition is one statement: a CTE updates the job (bumping its `seq`) and the
outer INSERT appends the matching `job_events` row, so the pair is atomic and the
per-job seq stays gapless without an explicit transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from tidings.core.model import EventKind


def _transition(
    update: str,
    kind: EventKind,
    *,
    attempt: str = "attempt",
    message: str = "NULL::text",
    data: str = "NULL::jsonb",
) -> str:
    return f"""
WITH job AS ({update} RETURNING *),
event AS (
    INSERT INTO job_events
        (job_id, seq, kind, status, attempt, progress_current, progress_total, message, data)
    SELECT id, seq, '{kind}', status, {attempt}, NULL, NULL, {message}, {data} FROM job
    RETURNING *
)
SELECT event.*, job.run_at AS job_run_at, job.queue AS job_queue, job.task AS job_task,
       job.tenant AS job_tenant
FROM event JOIN job ON job.id = event.job_id
"""


INSERT_JOB = """
WITH job AS (
    INSERT INTO jobs (id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
                      idempotency_key, tenant, run_at, schedule_key, seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, now()), $12, 1)
    ON CONFLICT (schedule_key) DO NOTHING
    RETURNING *
),
event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt)
    SELECT id, 1, 'queued', status, attempt FROM job
    RETURNING at
)
SELECT job.*, event.at AS event_at FROM job, event
"""

# Many plain submissions in one statement (the server's group commit): one array per
# column, one row each. A row that hits a unique index (an idempotency key already used,
# even by an earlier row of the same call) is skipped, not an error, so one submission
# cannot fail the others; its caller looks the existing job up instead.
INSERT_JOBS = """
WITH job AS (
    INSERT INTO jobs (id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
                      idempotency_key, tenant, run_at, seq)
    SELECT id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
           idempotency_key, tenant, COALESCE(run_at, now()), 1
    FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::smallint[],
                $7::integer[], $8::float8[], $9::text[], $10::text[], $11::timestamptz[])
        AS r(id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
             idempotency_key, tenant, run_at)
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

# A result-cache hit: the new job is born succeeded, with both of its events.
INSERT_CACHED_JOB = """
WITH job AS (
    INSERT INTO jobs (id, task, args, args_hash, queue, priority, max_attempts, timeout_s,
                      idempotency_key, tenant, status, result, cached_from,
                      started_at, finished_at, seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'succeeded', $11, $12, now(), now(), 2)
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
FIND_CACHED_RESULT = """
SELECT id, result FROM jobs
WHERE tenant = $1 AND task = $2 AND args_hash = $3 AND status = 'succeeded'
  AND cached_from IS NULL AND finished_at > now() - make_interval(secs => $4)
ORDER BY finished_at DESC
LIMIT 1
"""

# Each claimed job's `started` event, plus what the worker needs to run it: up to $4 jobs.
CLAIM_JOBS = """
SELECT (c.claimed_event).*,
       (c.claimed_job).id, (c.claimed_job).task, (c.claimed_job).args,
       (c.claimed_job).queue, (c.claimed_job).timeout_s, (c.claimed_job).max_attempts,
       (c.claimed_job).task AS job_task, (c.claimed_job).queue AS job_queue,
       (c.claimed_job).tenant AS job_tenant
FROM claim_jobs($1, $2, $3, $4) AS c
"""

_RUNNING_ATTEMPT = "WHERE id = $1 AND attempt = $2 AND status = 'running'"
# How long the attempt that just ended ran, for the run-time histogram.
_RUN_S = "extract(epoch FROM now() - started_at)::float8"

# Many progress/log events of one running attempt at once: the job row is updated once
# (seq moves by the number of events; progress takes the last progress event's values)
# and the events get seq base+1 … base+n in order. The events come as one JSON array of
# [kind, current, total, message, data] items. One statement, however many events;
# it returns one row (no row: the attempt is no longer running), from which the writer
# rebuilds the events it just wrote (they share one `at`) instead of reading them back.
APPEND_EVENTS = """
WITH job AS (
    UPDATE jobs SET seq = seq + $3, updated_at = now(),
           progress_current = CASE WHEN $4 THEN $5 ELSE progress_current END,
           progress_total = CASE WHEN $4 THEN $6 ELSE progress_total END,
           progress_message = CASE WHEN $4 THEN $7 ELSE progress_message END
     WHERE id = $1 AND attempt = $2 AND status = 'running'
 RETURNING id, seq - $3 AS base, status, attempt, task, queue, tenant, clock_timestamp() AS at
),
event AS (
    INSERT INTO job_events
        (job_id, seq, kind, status, attempt, progress_current, progress_total, message, data, at)
    SELECT job.id, job.base + e.n, e.item ->> 0, job.status, job.attempt,
           (e.item ->> 1)::float8, (e.item ->> 2)::float8, e.item ->> 3,
           NULLIF(e.item -> 4, 'null'::jsonb), job.at
      FROM job, jsonb_array_elements($8::jsonb) WITH ORDINALITY AS e (item, n)
)
SELECT * FROM job
"""

SUCCEED = _transition(
    f"""UPDATE jobs SET status = 'succeeded', seq = seq + 1, result = $3, error = NULL,
           finished_at = now(), updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.SUCCEEDED,
    data=f"jsonb_build_object('result', $3::jsonb, 'run_s', {_RUN_S})",
)

FAIL = _transition(
    f"""UPDATE jobs SET status = 'failed', seq = seq + 1, error = $3,
           finished_at = now(), updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.FAILED,
    message="$3::jsonb ->> 'message'",
    data=f"jsonb_build_object('error', $3::jsonb, 'run_s', {_RUN_S})",
)

# The failed attempt is recorded on the event; the job moves on to the next attempt.
RETRY = _transition(
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

CANCEL_RUNNING = _transition(
    f"""UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
           updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.CANCELLED,
    message="'cancelled while running'",
    data=f"jsonb_build_object('run_s', {_RUN_S})",
)

CANCEL_WAITING = _transition(
    """UPDATE jobs SET status = 'cancelled', seq = seq + 1, finished_at = now(),
           cancel_requested_at = now(), updated_at = now()
       WHERE id = $1 AND tenant = $2 AND status IN ('queued', 'retrying')""",
    EventKind.CANCELLED,
    message="'cancelled before it started'",
)

REQUEST_CANCEL = """
UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
WHERE id = $1 AND tenant = $2 AND status = 'running'
RETURNING *
"""

MANUAL_RETRY = _transition(
    """UPDATE jobs SET status = 'queued', seq = seq + 1, attempt = attempt + 1,
           max_attempts = GREATEST(max_attempts, attempt + 1), run_at = now(),
           result = NULL, error = NULL, started_at = NULL, finished_at = NULL,
           cancel_requested_at = NULL, worker_id = NULL, updated_at = now()
       WHERE id = $1 AND tenant = $2 AND status IN ('failed', 'cancelled')""",
    EventKind.QUEUED,
    message="'manual retry'",
    data="jsonb_build_object('reason', 'manual retry')",
)

# No worker can heartbeat while Postgres is down: silence counts only from when Postgres
# (re)started, so a restart never makes the live workers look lost.
_UP_FOR_SILENCE = "pg_postmaster_start_time() < now() - make_interval(secs => $1)"

# Running jobs whose worker is gone or silent for longer than $1 seconds.
_LOST = f"""WHERE status = 'running' AND {_UP_FOR_SILENCE} AND NOT EXISTS (
           SELECT 1 FROM workers w
            WHERE w.id = jobs.worker_id AND w.heartbeat_at > now() - make_interval(secs => $1))"""

# A lost attempt counts: a job that keeps killing its workers ends up failed.
REQUEUE_LOST = _transition(
    f"""UPDATE jobs SET status = 'queued', seq = seq + 1, attempt = attempt + 1,
           run_at = now(), worker_id = NULL, started_at = NULL, updated_at = now()
       {_LOST} AND attempt < max_attempts""",
    EventKind.REQUEUED,
    message="'worker lost'",
    data="jsonb_build_object('reason', 'worker_lost')",
)

FAIL_LOST = _transition(
    f"""UPDATE jobs SET status = 'failed', seq = seq + 1, finished_at = now(), updated_at = now(),
           error = jsonb_build_object('type', 'WorkerLost', 'traceback', NULL,
               'message', 'the worker running the last attempt stopped responding')
       {_LOST} AND attempt >= max_attempts""",
    EventKind.FAILED,
    message="'worker lost'",
    data="jsonb_build_object('error', error)",
)

DELETE_SILENT_WORKERS = f"""
DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1) AND {_UP_FOR_SILENCE}
"""

# A stopping worker hands back what it could not finish; that is not the job's fault,
# so the attempt it lost does not use up its budget.
REQUEUE_OWN = _transition(
    """UPDATE jobs SET status = 'queued', seq = seq + 1, attempt = attempt + 1,
           max_attempts = GREATEST(max_attempts, attempt + 1), run_at = now(),
           worker_id = NULL, started_at = NULL, updated_at = now()
       WHERE worker_id = $1 AND status = 'running'""",
    EventKind.REQUEUED,
    message="'worker stopped'",
    data="jsonb_build_object('reason', 'worker_shutdown')",
)

GET_JOB = "SELECT * FROM jobs WHERE id = $1 AND tenant = $2"

# Jobs per status for the dashboard. Each count stops at $2 rows, so a long history costs
# at most $2 entries of the jobs_status index per status, not a scan of the whole table.
COUNT_BY_STATUS = """
SELECT s.status,
       (SELECT count(*) FROM (SELECT 1 FROM jobs j
                              WHERE j.tenant = $1 AND j.status = s.status LIMIT $2) AS capped)
           AS count
FROM unnest($3::text[]) AS s (status)
"""

# What a waiting job's ETA is estimated from: the task's recent run time, the jobs due
# ahead of it in its queue, and the live consumers of that queue.
ETA_INPUTS = """
SELECT
    (SELECT avg(extract(epoch FROM recent.finished_at - recent.started_at))
       FROM (SELECT finished_at, started_at FROM jobs
              WHERE task = $1 AND status = 'succeeded' AND cached_from IS NULL
              ORDER BY finished_at DESC LIMIT 20) AS recent) AS run_s,
    (SELECT count(*) FROM jobs w
      WHERE w.queue = $2 AND w.status IN ('queued', 'retrying') AND w.run_at <= now()
        AND (w.priority > $3 OR (w.priority = $3 AND (w.run_at, w.created_at) < ($4, $5))))
        AS ahead,
    (SELECT coalesce(sum(concurrency), 0) FROM workers
      WHERE $2 = ANY(queues) AND heartbeat_at > now() - interval '30 seconds') AS slots
"""
JOB_POSITION = "SELECT status, seq FROM jobs WHERE id = $1"
GET_BY_IDEMPOTENCY_KEY = "SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2"
IS_WAITING = """
SELECT run_at FROM jobs WHERE id = $1 AND attempt = $2 AND status IN ('queued', 'retrying')
"""

WAITING_JOBS = """
SELECT id, attempt, queue, run_at FROM jobs
WHERE status IN ('queued', 'retrying') AND queue = ANY($1::text[])
ORDER BY run_at
"""


async def list_jobs(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant: str,
    status: str | None = None,
    task: str | None = None,
    queue: str | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[asyncpg.Record]:
    """Jobs newest first, filtered, starting strictly after the `before` cursor."""
    clauses: list[str] = ["tenant = $1"]
    params: list[Any] = [tenant]
    for column, value in (("status", status), ("task", task), ("queue", queue)):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    if before is not None:
        params.extend(before)
        clauses.append(f"(created_at, id) < (${len(params) - 1}, ${len(params)})")
    params.append(limit)
    sql = (
        f"SELECT * FROM jobs WHERE {' AND '.join(clauses)} "
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(params)}"
    )
    return list(await conn.fetch(sql, *params))
