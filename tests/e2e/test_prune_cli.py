"""`tidings prune`: --dry-run shows what would go and deletes nothing; without it, it goes."""

from __future__ import annotations

import uuid
from dataclasses import replace

import asyncpg

from tests.support.servers import run_cli as tidings
from tidings.core.settings import Settings

RETAIN_S = 3600.0


async def finished_job(pool: asyncpg.Pool, status: str, ago_s: float) -> uuid.UUID:
    """A job that ended in `status` `ago_s` ago, with its two events."""
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, task, status, seq, finished_at)"
        " VALUES ($1, 'noop', $2, 2, now() - make_interval(secs => $3))",
        job_id,
        status,
        ago_s,
    )
    await pool.execute(
        "INSERT INTO job_events (job_id, seq, kind, status, attempt)"
        " VALUES ($1, 1, 'queued', 'queued', 1), ($1, 2, $2, $2, 1)",
        job_id,
        status,
    )
    return job_id


async def test_dry_run_shows_what_would_go_then_prune_deletes_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    short = replace(
        settings,
        retain_succeeded_s=RETAIN_S,
        retain_failed_s=RETAIN_S,
        retain_cancelled_s=RETAIN_S,
    )
    expired = [
        await finished_job(pool, "succeeded", RETAIN_S * 3),
        await finished_job(pool, "succeeded", RETAIN_S * 2),
        await finished_job(pool, "failed", RETAIN_S * 2),
    ]
    kept = await finished_job(pool, "succeeded", RETAIN_S / 2)
    oldest = await pool.fetchval("SELECT min(finished_at) FROM jobs")

    code, out, err = await tidings(short, "prune", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "would prune 3 jobs and 6 events:"
    assert lines[1].split()[:5] == ["failed", "1", "jobs", "2", "events"]
    assert lines[2].split()[:5] == ["succeeded", "2", "jobs", "4", "events"]
    assert oldest.isoformat(timespec="seconds") in lines[2]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 4
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 8

    code, out, err = await tidings(short, "prune")
    assert code == 0, err
    assert out.strip() == "pruned 3 jobs (failed 1, succeeded 2) and 6 events in 1 batch"
    remaining = await pool.fetch("SELECT id FROM jobs WHERE id = ANY($1::uuid[])", [*expired, kept])
    assert [row["id"] for row in remaining] == [kept]
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 2

    code, out, err = await tidings(short, "prune", "--dry-run")
    assert (code, out.strip()) == (0, "nothing to prune")
