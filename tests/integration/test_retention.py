"""Retention against real Postgres: which finished jobs the pruner deletes, with their events,
in what batches, alongside whom, and what clients see of a pruned job.

Nothing waits for a job to grow old: `finished_at` is set in the past with SQL. Each test
starts from an empty `jobs` table, so the counts a pass reports are the test's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.api import get_job, submit, until
from tests.support.retention_tasks import BRIEF_RETAIN_S, LASTING_RETAIN_S
from tests.support.servers import ServerHandle, WorkerHandle, free_port, start_worker
from tidings.core.model import TERMINAL_STATUSES
from tidings.core.settings import Settings
from tidings.worker.retention import FAIR_TURN_IDLE_S, Pruned, Pruner, Retention

WITHIN_S = 20.0
# The status retentions these tests prune with: a task's own `retain_s` lies on either side
# of the succeeded one (BRIEF_RETAIN_S < SUCCEEDED_S < LASTING_RETAIN_S).
SUCCEEDED_S, FAILED_S, CANCELLED_S = 600.0, 3600.0, 1800.0
POLICY = Retention(succeeded_s=SUCCEEDED_S, failed_s=FAILED_S, cancelled_s=CANCELLED_S)
# Long past every retention of POLICY but LASTING_RETAIN_S.
LONG_AGO_S = 2 * FAILED_S


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    # The module's worker keeps the default retentions (days) and prunes once, at start:
    # the rows these tests make are pruned by the tests' own pruners, when they say so.
    return replace(
        settings,
        tasks=("tidings.worker.tasks.examples", "tests.support.retention_tasks"),
        prune_period_s=3600.0,
    )


@pytest.fixture(autouse=True)
async def no_jobs(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM job_events")
    await pool.execute("DELETE FROM jobs")


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


def pruner(pool: asyncpg.Pool, **options: Any) -> Pruner:
    """A pruner with POLICY and roomy batches, unless `options` say otherwise."""
    given: dict[str, Any] = {"batch_jobs": 100, "batch_events": 10_000}
    return Pruner(pool, POLICY, **{**given, **options})


async def make_job(
    pool: asyncpg.Pool,
    *,
    status: str = "succeeded",
    ago_s: float = LONG_AGO_S,
    task: str = "noop",
    events: int = 3,
) -> uuid.UUID:
    """A job of `task` in `status` with `events` events, that finished `ago_s` ago (set
    even on a job that has not finished, to show the status alone keeps it)."""
    job_id = uuid.uuid4()
    await pool.execute(
        """
        INSERT INTO jobs (id, task, status, seq, created_at, finished_at)
        VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5 + 1),
                now() - make_interval(secs => $5))
        """,
        job_id,
        task,
        status,
        events,
        ago_s,
    )
    await pool.execute(
        """
        INSERT INTO job_events (job_id, seq, kind, status, attempt)
        SELECT $1, n, 'log', $2, 1 FROM generate_series(1, $3::int) AS n
        """,
        job_id,
        status,
        events,
    )
    return job_id


async def stored(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are still jobs."""
    rows = await pool.fetch("SELECT id FROM jobs WHERE id = ANY($1::uuid[])", ids)
    return {row["id"] for row in rows}


async def event_rows(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM job_events WHERE job_id = ANY($1::uuid[])", ids
    )
    return count


async def backdate(pool: asyncpg.Pool, job_ids: list[str], ago_s: float) -> None:
    """Make finished jobs look as if they finished `ago_s` ago."""
    await pool.execute(
        "UPDATE jobs SET finished_at = now() - make_interval(secs => $2) WHERE id = ANY($1)",
        [uuid.UUID(job_id) for job_id in job_ids],
        ago_s,
    )


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def terminal() -> dict[str, Any] | None:
        job = await get_job(client, job_id)
        return job if job["status"] in TERMINAL_STATUSES else None

    job: dict[str, Any] = await until(terminal, WITHIN_S)
    return job


# --- what goes --------------------------------------------------------------------------------


async def test_finished_jobs_past_their_status_retention_go_with_their_events(
    pool: asyncpg.Pool,
) -> None:
    expired = [
        await make_job(pool, status="succeeded", ago_s=SUCCEEDED_S + 60),
        await make_job(pool, status="failed", ago_s=FAILED_S + 60),
        await make_job(pool, status="cancelled", ago_s=CANCELLED_S + 60),
    ]
    within = [
        await make_job(pool, status="succeeded", ago_s=SUCCEEDED_S - 60),
        # Older than the succeeded retention, younger than its own status's.
        await make_job(pool, status="failed", ago_s=FAILED_S - 60),
        await make_job(pool, status="cancelled", ago_s=CANCELLED_S - 60),
    ]
    unfinished = [
        await make_job(pool, status=status, ago_s=LONG_AGO_S)
        for status in ("queued", "running", "retrying")
    ]

    pruned = await pruner(pool).run_once()

    assert pruned.jobs == {"succeeded": 1, "failed": 1, "cancelled": 1}
    assert pruned.events == 9
    assert await stored(pool, expired) == set()
    assert await event_rows(pool, expired) == 0
    kept = within + unfinished
    assert await stored(pool, kept) == set(kept)
    assert await event_rows(pool, kept) == 3 * len(kept)
    assert (await pruner(pool).run_once()).total_jobs == 0


async def test_a_tasks_retain_s_wins_over_its_status(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    defaults = {
        row["name"]: row["defaults"]["retain_s"]
        for row in await pool.fetch("SELECT name, defaults FROM tasks")
    }
    assert (defaults["brief"], defaults["lasting"], defaults["noop"]) == (
        BRIEF_RETAIN_S,
        LASTING_RETAIN_S,
        None,
    )
    jobs = {task: (await submit(client, task))["id"] for task in ("brief", "noop", "lasting")}
    for job_id in jobs.values():
        assert (await finished(client, job_id))["status"] == "succeeded"
    ids = {task: uuid.UUID(job_id) for task, job_id in jobs.items()}

    # Past the brief task's own retention, within the succeeded status's.
    await backdate(pool, list(jobs.values()), (BRIEF_RETAIN_S + SUCCEEDED_S) / 2)
    assert (await pruner(pool).run_once()).jobs == {"succeeded": 1}
    assert await stored(pool, list(ids.values())) == {ids["noop"], ids["lasting"]}

    # Past the succeeded status's retention, within the lasting task's own.
    await backdate(pool, list(jobs.values()), LONG_AGO_S)
    assert (await pruner(pool).run_once()).jobs == {"succeeded": 1}
    assert await stored(pool, list(ids.values())) == {ids["lasting"]}
    assert await event_rows(pool, [ids["brief"], ids["noop"]]) == 0


# --- how it goes ------------------------------------------------------------------------------


async def test_batches_are_bounded_by_jobs_and_each_commits_on_its_own(
    pool: asyncpg.Pool,
) -> None:
    ids = [await make_job(pool) for _ in range(25)]
    remaining: list[int] = []

    class Watched(Pruner):
        async def _batch(self) -> asyncpg.Record | None:
            batch = await super()._batch()
            # Another connection sees each batch's deletions: it has committed.
            remaining.append(len(await stored(pool, ids)))
            return batch

    batches: list[int] = []
    watched = Watched(
        pool,
        POLICY,
        batch_jobs=4,
        batch_events=10_000,
        on_pruned=lambda jobs, events: batches.append(sum(jobs.values())),
    )
    pruned = await watched.run_once()

    assert batches == [4, 4, 4, 4, 4, 4, 1]
    assert remaining == [21, 17, 13, 9, 5, 1, 0, 0]  # the last batch finds nothing
    assert (pruned.total_jobs, pruned.events, pruned.batches) == (25, 75, 7)


async def test_batches_are_bounded_by_events_and_a_bigger_job_goes_alone(
    pool: asyncpg.Pool,
) -> None:
    big = await make_job(pool, events=100, ago_s=LONG_AGO_S + 1)  # the oldest: first
    small = [await make_job(pool, events=10) for _ in range(10)]
    event_counts: list[int] = []

    pruned = await pruner(
        pool, batch_events=25, on_pruned=lambda jobs, events: event_counts.append(events)
    ).run_once()

    assert event_counts == [100, 20, 20, 20, 20, 20]
    assert pruned.total_jobs == 11
    assert await stored(pool, [big, *small]) == set()


async def test_two_pruners_at_once_delete_each_job_once(pool: asyncpg.Pool) -> None:
    for wait_for_lock in (False, True):  # as workers do; as two `tidings prune` would
        ids = [await make_job(pool) for _ in range(40)]
        passes: list[Pruned] = await asyncio.gather(
            *(pruner(pool, batch_jobs=3, wait_for_lock=wait_for_lock).run_once() for _ in "ab")
        )
        assert sum(p.total_jobs for p in passes) == 40
        assert sum(p.events for p in passes) == 120
        assert await stored(pool, ids) == set()
        assert await pool.fetchval("SELECT count(*) FROM job_events") == 0


async def test_a_job_someone_holds_is_skipped_not_waited_for(pool: asyncpg.Pool) -> None:
    held, free = await make_job(pool), await make_job(pool)
    async with pool.acquire() as conn, conn.transaction():
        # As a manual retry holds the row while it moves the job back to queued.
        await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", held)
        async with asyncio.timeout(WITHIN_S / 2):
            pruned = await pruner(pool).run_once()
        assert pruned.total_jobs == 1
        assert await stored(pool, [held, free]) == {held}
    assert (await pruner(pool).run_once()).total_jobs == 1
    assert await stored(pool, [held, free]) == set()


async def test_expired_reports_what_would_go_and_deletes_nothing(pool: asyncpg.Pool) -> None:
    await make_job(pool, status="succeeded", ago_s=SUCCEEDED_S + 10, events=4)
    await make_job(pool, status="succeeded", ago_s=SUCCEEDED_S + 20, events=2)
    await make_job(pool, status="failed", ago_s=FAILED_S + 30)
    await make_job(pool, status="failed", ago_s=FAILED_S - 30)
    before = await pool.fetchval("SELECT count(*) FROM job_events")

    rows = await pruner(pool).expired()

    assert [(r["status"], r["jobs"], r["events"]) for r in rows] == [
        ("failed", 1, 3),
        ("succeeded", 2, 6),
    ]
    oldest = {r["status"]: r["oldest"] for r in rows}
    now = await pool.fetchval("SELECT now()")
    assert round((now - oldest["succeeded"]).total_seconds()) == SUCCEEDED_S + 20
    assert round((now - oldest["failed"]).total_seconds()) == FAILED_S + 30
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 4
    assert await pool.fetchval("SELECT count(*) FROM job_events") == before


async def test_the_oldest_retained_jobs_age_is_reported_after_each_pass(
    pool: asyncpg.Pool,
) -> None:
    ages: list[float | None] = []
    await pruner(pool, on_oldest=ages.append).run_once()
    await make_job(pool, status="failed", ago_s=FAILED_S - 100)
    await make_job(pool, status="succeeded", ago_s=LONG_AGO_S)
    await pruner(pool, on_oldest=ages.append).run_once()
    assert ages[0] is None
    assert ages[1] is not None and round(ages[1]) == FAILED_S - 100


async def test_a_pass_forgets_the_turns_of_groups_idle_for_an_hour(pool: asyncpg.Pool) -> None:
    queue_name = f"turns-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "INSERT INTO fair_turns (queue, tenant, fair_key, served_at) VALUES "
        "($1, 'idle', '', now() - make_interval(secs => $2)), ($1, 'recent', '', now())",
        queue_name,
        FAIR_TURN_IDLE_S + 60,
    )
    try:
        pruned = await pruner(pool).run_once()
        remaining = await pool.fetch("SELECT tenant FROM fair_turns WHERE queue = $1", queue_name)
    finally:
        await pool.execute("DELETE FROM fair_turns WHERE queue = $1", queue_name)
    assert pruned.turns == 1
    assert [row["tenant"] for row in remaining] == ["recent"]


# --- what clients see -------------------------------------------------------------------------


async def rows_of_job(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, int]:
    """The job's rows in every table whose foreign key names `jobs`, however its events
    are stored."""
    tables = await pool.fetch(
        """
        SELECT c.conrelid::regclass::text AS name, a.attname AS column_name
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f' AND c.confrelid = 'jobs'::regclass
        """
    )
    assert "job_events" in {table["name"] for table in tables}
    return {
        table["name"]: await pool.fetchval(
            f"SELECT count(*) FROM {table['name']} WHERE {table['column_name']} = $1", job_id
        )
        for table in tables
    }


async def test_a_pruned_job_is_a_404_like_any_unknown_job(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job_id = (await submit(client, "sleep_steps", args={"steps": 5, "delay_s": 0}))["id"]
    await finished(client, job_id)
    stored_rows = await rows_of_job(pool, uuid.UUID(job_id))
    assert sum(stored_rows.values()) >= 3  # queued, started, progress…, succeeded
    await backdate(pool, [job_id], LONG_AGO_S)
    pruned = await pruner(pool).run_once()
    assert (pruned.total_jobs, pruned.events) == (1, 8)
    assert set((await rows_of_job(pool, uuid.UUID(job_id))).values()) == {0}

    unknown = str(uuid.uuid4())
    for path in ("/jobs/{id}", "/jobs/{id}/events"):
        for accept in ("application/json", "text/event-stream"):
            pruned = await client.get(path.format(id=job_id), headers={"accept": accept})
            never = await client.get(path.format(id=unknown), headers={"accept": accept})
            assert (pruned.status_code, never.status_code) == (404, 404)
            assert pruned.json()["error"]["code"] == never.json()["error"]["code"]


async def test_an_idempotency_key_is_free_again_once_its_job_is_pruned(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    body = {"task": "noop", "idempotency_key": f"key-{uuid.uuid4().hex}"}
    first = (await submit(client, **body))["id"]
    await finished(client, first)
    again = await client.post("/jobs", json=body)
    assert (again.status_code, again.json()["id"]) == (200, first)

    await backdate(pool, [first], LONG_AGO_S)
    await pruner(pool).run_once()
    second = (await submit(client, **body))["id"]
    assert second != first


# --- in the worker ----------------------------------------------------------------------------


async def test_every_worker_prunes_on_its_own_and_counts_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    expired = await make_job(pool, ago_s=LONG_AGO_S, events=5)
    kept = await make_job(pool, ago_s=SUCCEEDED_S - 100)
    port = free_port()
    pruning = replace(
        settings,
        retain_succeeded_s=SUCCEEDED_S,
        prune_period_s=0.05,
        worker_metrics_port=port,
    )
    async with start_worker(pruning), httpx.AsyncClient(timeout=WITHIN_S) as scraper:

        async def pruned_and_counted() -> dict[str, float] | None:
            if await stored(pool, [expired, kept]) != {kept}:
                return None
            text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
            series = dict(
                line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("tidings_")
            )
            values = {name: float(value) for name, value in series.items()}
            counted = values.get('tidings_worker_pruned_jobs_total{status="succeeded"}', 0)
            # The gauge is read after the pass that counted: wait for that pass to end.
            oldest = values["tidings_worker_oldest_finished_job_age_seconds"]
            return values if counted >= 1 and oldest >= SUCCEEDED_S - 100 else None

        values = await until(pruned_and_counted, WITHIN_S)
    assert values['tidings_worker_pruned_jobs_total{status="succeeded"}'] == 1
    assert values["tidings_worker_pruned_events_total"] == 5
    assert values["tidings_worker_oldest_finished_job_age_seconds"] >= SUCCEEDED_S - 100


async def test_a_finished_batch_goes_once_its_last_member_has(pool: asyncpg.Pool) -> None:
    emptied, kept = uuid.uuid4(), uuid.uuid4()
    for batch_id in (emptied, kept):
        await pool.execute("INSERT INTO batches (id, tenant) VALUES ($1, 'default')", batch_id)
    old = await make_job(pool, status="succeeded", ago_s=LONG_AGO_S)
    recent = await make_job(pool, status="succeeded", ago_s=SUCCEEDED_S - 60)
    await pool.execute("UPDATE jobs SET batch_id = $2 WHERE id = $1", old, emptied)
    await pool.execute("UPDATE jobs SET batch_id = $2 WHERE id = $1", recent, kept)
    await pool.execute("SELECT seal_batch(id) FROM batches")

    pruned = await pruner(pool).run_once()

    assert pruned.jobs == {"succeeded": 1}
    left = {row["id"] for row in await pool.fetch("SELECT id FROM batches")}
    assert left == {kept}
