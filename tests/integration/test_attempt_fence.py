"""The attempt fence: a stale attempt's writes change nothing once a newer attempt runs.

Attempt 1 of a job is claimed, then its worker goes silent and the reaper re-queues the
job; attempt 2 is claimed by another worker. Attempt 1 wakes up and does everything a
running task does — progress, a log line, and each way of ending — through the worker's
own reporter. Every one of those writes must be refused by the fence (`attempt = $2` in the
running-attempt check), leaving the job and attempt 2's events exactly as they were.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import jobs
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter
from tidings.worker.maintenance import Reaper
from tidings.worker.reporter import Reporter

PARKED = "fence"  # no worker consumes it


async def claim(pool: asyncpg.Pool, worker_id: str) -> asyncpg.Record:
    (row,) = await jobs.claim_jobs(
        pool, queue=PARKED, worker_id=worker_id, limits={}, count=1, tasks=["noop"]
    )
    return row


async def history(pool: asyncpg.Pool, job_id: Any) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT seq, kind, status, attempt, progress_current, message, data "
        "FROM job_history WHERE job_id = $1 ORDER BY seq",
        job_id,
    )
    return [dict(row) for row in rows]


async def job_state(pool: asyncpg.Pool, job_id: Any) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT status, attempt, seq, worker_id, progress_current, progress_message, result, "
        "error, finished_at FROM jobs WHERE id = $1",
        job_id,
    )
    assert row is not None
    return dict(row)


async def test_a_stale_attempt_changes_nothing_while_the_next_one_runs(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, reporter: Reporter
) -> None:
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))
    request = JobRequest(task="noop", args={}, queue=PARKED, max_attempts=3, timeout_s=60)
    submitted = await submitter.submit(request)
    assert submitted is not None
    job_id = submitted.row["id"]

    first = await claim(pool, "worker-that-froze")
    assert (first["id"], first["attempt"]) == (job_id, 1)
    # The frozen worker never registered a heartbeat: the reaper takes its attempt back.
    reaper = Reaper(pool, redis, queue.Names(settings.namespace), silence_s=0.001)
    assert await reaper.run_once() == 1
    second = await claim(pool, "worker-that-took-over")
    assert (second["id"], second["attempt"]) == (job_id, 2)
    reporter.note(job_id, 2, ("progress", 1.0, 4.0, "attempt 2 at 1 of 4", None))
    await reporter.flush()
    before_state, before_events = await job_state(pool, job_id), await history(pool, job_id)
    assert before_state["status"] == "running"
    assert before_state["attempt"] == 2
    assert [e["kind"] for e in before_events] == [
        "queued",
        "started",
        "requeued",
        "started",
        "progress",
    ]

    # Attempt 1 wakes up and carries on as if it still ran.
    reporter.note(job_id, 1, ("progress", 3.0, 4.0, "stale progress", None))
    reporter.note(job_id, 1, ("log", None, None, "stale log line", None))
    await reporter.flush()
    stale = {"job_id": job_id, "attempt": 1}
    assert await reporter.write(jobs.succeed, **stale, result={"stale": True}) is None
    assert await reporter.write(jobs.fail, **stale, error=stale_error()) is None
    assert await reporter.write(jobs.retry, **stale, error=stale_error(), delay_s=0.0) is None
    assert await reporter.write(jobs.cancel_running, **stale) is None

    assert await job_state(pool, job_id) == before_state
    assert await history(pool, job_id) == before_events

    # The live attempt is untouched and ends normally, right after its own events.
    reporter.note(job_id, 2, ("progress", 4.0, 4.0, "attempt 2 done", None))
    await reporter.flush()
    succeeded = await reporter.write(jobs.succeed, job_id=job_id, attempt=2, result={"attempt": 2})
    assert succeeded is not None
    after = await history(pool, job_id)
    assert after[: len(before_events)] == before_events
    assert [(e["seq"], e["kind"], e["attempt"]) for e in after[len(before_events) :]] == [
        (6, "progress", 2),
        (7, "succeeded", 2),
    ]
    final = await job_state(pool, job_id)
    assert (final["status"], final["attempt"], final["result"]) == ("succeeded", 2, {"attempt": 2})
    assert final["progress_message"] == "attempt 2 done"


def stale_error() -> dict[str, Any]:
    return {"type": "RuntimeError", "message": "stale attempt", "traceback": None}
