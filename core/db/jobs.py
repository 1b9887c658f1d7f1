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

from core.model import EventKind


def _transition(
    update: str,
    kind: EventKind,
    *,
    current: str = "NULL::float8",
    total: str = "NULL::float8",
    message: str = "NULL::text",
    data: str = "NULL::jsonb",
    job_columns: str = "",
) -> str:
    return f"""
WITH job AS ({update} RETURNING *),
event AS (
    INSERT INTO job_events
        (job_id, seq, kind, status, attempt, progress_current, progress_total, message, data)
    SELECT id, seq, '{kind}', status, attempt, {current}, {total}, {message}, {data} FROM job
    RETURNING *
)
SELECT event.*{job_columns} FROM event, job
"""


INSERT_JOB = """
WITH job AS (
    INSERT INTO jobs (id, task, args, queue, priority, max_attempts, timeout_s,
                      idempotency_key, tenant, run_at, seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, now()), 1)
    RETURNING *
),
event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt)
    SELECT id, 1, 'queued', status, attempt FROM job
    RETURNING at
)
SELECT job.*, event.at AS event_at FROM job, event
"""

CLAIM = _transition(
    """UPDATE jobs SET status = 'running', seq = seq + 1, started_at = now(),
           updated_at = now(), worker_id = $3
       WHERE id = $1 AND status = 'queued' AND attempt = $2""",
    EventKind.STARTED,
    data="jsonb_build_object('worker_id', $3::text)",
    job_columns=", job.task, job.args, job.queue, job.timeout_s, job.max_attempts, job.tenant",
)

_RUNNING_ATTEMPT = "WHERE id = $1 AND attempt = $2 AND status = 'running'"

PROGRESS = _transition(
    f"""UPDATE jobs SET seq = seq + 1, updated_at = now(), progress_current = $3,
           progress_total = $4, progress_message = $5
       {_RUNNING_ATTEMPT}""",
    EventKind.PROGRESS,
    current="$3",
    total="$4",
    message="$5",
    data="$6",
)

LOG = _transition(
    f"UPDATE jobs SET seq = seq + 1, updated_at = now() {_RUNNING_ATTEMPT}",
    EventKind.LOG,
    message="$3",
    data="$4",
)

SUCCEED = _transition(
    f"""UPDATE jobs SET status = 'succeeded', seq = seq + 1, result = $3,
           finished_at = now(), updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.SUCCEEDED,
    data="jsonb_build_object('result', $3::jsonb)",
)

FAIL = _transition(
    f"""UPDATE jobs SET status = 'failed', seq = seq + 1, error = $3,
           finished_at = now(), updated_at = now()
       {_RUNNING_ATTEMPT}""",
    EventKind.FAILED,
    message="$3::jsonb ->> 'message'",
    data="jsonb_build_object('error', $3::jsonb)",
)

GET_JOB = "SELECT * FROM jobs WHERE id = $1 AND tenant = $2"
JOB_POSITION = "SELECT status, seq FROM jobs WHERE id = $1"
GET_BY_IDEMPOTENCY_KEY = "SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2"

PENDING_DUE = """
SELECT id, attempt, queue, run_at FROM jobs
WHERE status = 'queued' AND queue = ANY($1::text[])
ORDER BY run_at
"""


async def insert_job(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    task: str,
    args: dict[str, Any],
    queue: str,
    priority: int,
    max_attempts: int,
    timeout_s: float,
    idempotency_key: str | None,
    tenant: str,
    run_at: datetime | None,
) -> asyncpg.Record:
    """Insert a queued job and its `queued` event; returns the job row plus `event_at`."""
    row = await conn.fetchrow(
        INSERT_JOB,
        uuid.uuid4(),
        task,
        args,
        queue,
        priority,
        max_attempts,
        timeout_s,
        idempotency_key,
        tenant,
        run_at,
    )
    assert row is not None
    return row


def _list_query(
    tenant: str,
    status: str | None,
    task: str | None,
    queue: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[str, list[Any]]:
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
    return sql, params


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
    sql, params = _list_query(tenant, status, task, queue, before, limit)
    return list(await conn.fetch(sql, *params))
