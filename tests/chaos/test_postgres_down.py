"""Postgres stopped for longer than a worker may stay silent, then started again.

The server answers 503 with Retry-After at once (never a hang, never a 500) and /readyz
goes red then green; the worker keeps running its task, buffers the task's progress and
writes all of it once Postgres is back. Nobody mistakes the live worker for a lost one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest

from tests.chaos.checks import (
    Event,
    assert_each_succeeded_once,
    assert_gapless,
    poll_until,
    progress_of,
    read_stream,
    stream_under_way,
)
from tests.chaos.conftest import Cluster
from tests.chaos.servers import PostgresServer, RedisServer
from tidings.core import queue
from tidings.core.db.migrate import migrate_url
from tidings.core.db.pool import CONNECTION_ERRORS, create_pool
from tidings.worker.maintenance import Reaper

pytestmark = pytest.mark.chaos

STEPS = 70
STEP_S = 0.25  # 17.5 s of work, across the outage
# Longer than the default reap_after_s (10 s): heartbeats stop too, for everyone.
OUTAGE_S = 12.0
DB_TIMEOUT_S = 2.0
PROBE_EVERY_S = 0.5  # paces the probes made during the outage; it waits for nothing
SILENCE_S = 3.0
UPTIME_S = "SELECT extract(epoch FROM now() - pg_postmaster_start_time())"


async def timed(client: httpx.AsyncClient, method: str, path: str, **kwargs: object) -> float:
    """Make one request that must be refused as unavailable; returns how long it took."""
    started = time.monotonic()
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert response.status_code == 503, (method, path, response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    if path != "/readyz":
        assert response.json()["error"]["code"] == "unavailable"
    return elapsed


async def test_postgres_stopped_for_12_s_costs_no_event_and_no_rerun(
    cluster: Cluster, postgres_server: PostgresServer
) -> None:
    cluster.settings = replace(
        cluster.settings, database_url=postgres_server.url, db_timeout_s=DB_TIMEOUT_S
    )
    server = await cluster.server()
    worker = await cluster.worker()
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        response = await client.post(
            "/jobs", json={"task": "sleep_steps", "args": {"steps": STEPS, "delay_s": STEP_S}}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert (await client.get("/readyz")).status_code == 200

        events: list[Event] = []
        stream = await stream_under_way(client, job_id, events)
        # An idle worker too: its reaper, like the busy worker's own, must not take the
        # busy worker for lost when Postgres comes back before that one heartbeats.
        idle = await cluster.worker()

        await postgres_server.stop()
        outage_ends = time.monotonic() + OUTAGE_S
        stopped_at_step = events[-1][2]["current"]
        elapsed: list[float] = []
        while time.monotonic() < outage_ends:
            elapsed.append(await timed(client, "GET", f"/jobs/{job_id}"))
            elapsed.append(await timed(client, "POST", "/jobs", json={"task": "noop"}))
            elapsed.append(await timed(client, "GET", "/readyz"))
            await asyncio.sleep(PROBE_EVERY_S)
        # The task went on: its progress was buffered, and the writes are being retried.
        assert "reporter.retrying" in worker.output
        assert "heartbeat.failed" in worker.output
        assert worker.proc.returncode is None and server.proc.returncode is None
        assert idle.proc.returncode is None
        await postgres_server.start()

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await poll_until(ready)
        async with asyncio.timeout(30):
            await stream
            after = await client.post("/jobs", json={"task": "noop"})
            assert after.status_code == 202, after.text
            tail = await read_stream(client, after.json()["id"])
        assert [kind for _, kind, _ in tail] == ["queued", "started", "succeeded"]

    # Never a hang: every refusal came well within the database timeout.
    assert max(elapsed) < DB_TIMEOUT_S, max(elapsed)
    assert len(elapsed) >= 3 * OUTAGE_S / (PROBE_EVERY_S + DB_TIMEOUT_S)
    # One connection, every event once and in order: one attempt, all its progress.
    assert_gapless(events)
    assert [kind for _, kind, _ in events] == [
        "queued",
        "started",
        *["progress"] * STEPS,
        "succeeded",
    ]
    assert progress_of(events, 1) == [float(step) for step in range(1, STEPS + 1)]

    pool = await create_pool(postgres_server.url, max_size=2)
    try:
        ids = [uuid.UUID(job_id), uuid.UUID(after.json()["id"])]
        histories = await assert_each_succeeded_once(pool, ids)
        rows = histories[uuid.UUID(job_id)]
        assert [row["seq"] for row in rows] == [seq for seq, _, _ in events]
        assert [row["attempt"] for row in rows] == [1] * len(rows)
        assert await pool.fetchval("SELECT count(*) FROM workers") == 2
    finally:
        await pool.close()
    # What the task reported while Postgres was down was committed in a burst once it was
    # back, not one step every STEP_S: the task had kept running through the outage.
    resumed = [
        datetime.fromisoformat(data["at"])
        for _, kind, data in events
        if kind == "progress" and data["current"] > stopped_at_step
    ]
    burst = [at for at in resumed if at - resumed[0] < timedelta(seconds=1)]
    assert len(burst) >= 0.75 * OUTAGE_S / STEP_S, len(burst)
    assert cluster.logs.count('"job.requeued"') == 0


async def test_a_reaper_judges_no_worker_until_it_could_have_heartbeated_again(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    """The reaper's two guards, each on its own, against a real Postgres restart.

    A reaper that lost Postgres waits `silence_s` of contact before it judges anyone (its
    clock is faked here); a reaper that never lost it still judges nobody until Postgres
    has been up for `silence_s` (Postgres's own clock).
    """
    await migrate_url(postgres_server.url)
    pool = await create_pool(postgres_server.url, max_size=2)
    redis = await queue.connect(redis_server.url)
    names = queue.Names("reaper")
    now = [0.0]
    try:

        async def running_job_of_a_silent_worker() -> uuid.UUID:
            worker_id, job_id = f"silent-{uuid.uuid4().hex[:8]}", uuid.uuid4()
            await pool.execute(
                "INSERT INTO workers (id, hostname, pid, queues, concurrency, heartbeat_at)"
                " VALUES ($1, 'elsewhere', 1, '{default}', 1, now() - interval '1 hour')",
                worker_id,
            )
            await pool.execute(
                "INSERT INTO jobs (id, task, status, worker_id) VALUES ($1, 'noop', 'running', $2)",
                job_id,
                worker_id,
            )
            return job_id

        async def status(job_id: uuid.UUID) -> str:
            return str(await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id))

        async def postgres_up_for(seconds: float) -> None:
            async def up() -> bool:
                uptime_s: float = await pool.fetchval(UPTIME_S)
                return uptime_s > seconds

            await poll_until(up, within_s=seconds + 10)

        seen_outage = Reaper(pool, redis, names, silence_s=SILENCE_S, clock=lambda: now[0])
        await postgres_up_for(SILENCE_S)
        before = await running_job_of_a_silent_worker()
        assert await seen_outage.run_once() == 1
        assert await status(before) == "queued"

        during = await running_job_of_a_silent_worker()
        await postgres_server.stop()
        with pytest.raises(CONNECTION_ERRORS):
            await seen_outage.run_once()
        await postgres_server.start()

        # Postgres is up again, for less than SILENCE_S: neither reaper judges.
        fresh = Reaper(pool, redis, names, silence_s=SILENCE_S)
        assert await pool.fetchval(UPTIME_S) < SILENCE_S
        assert await fresh.run_once() == 0
        assert await seen_outage.run_once() == 0
        assert await status(during) == "running"
        # Postgres's guard is past; the reaper that lost contact still waits on its own.
        await postgres_up_for(SILENCE_S)
        assert await seen_outage.run_once() == 0
        assert await status(during) == "running"
        now[0] += SILENCE_S
        assert await seen_outage.run_once() == 1
        assert await status(during) == "queued"
    finally:
        await redis.aclose()
        await pool.close()
