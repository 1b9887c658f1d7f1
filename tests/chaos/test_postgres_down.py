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

from core.db.pool import create_pool
from tests.chaos.checks import (
    Event,
    assert_each_succeeded_once,
    assert_gapless,
    progress_of,
    read_stream,
)
from tests.chaos.conftest import Cluster
from tests.chaos.servers import PostgresServer

pytestmark = pytest.mark.chaos

STEPS = 70
STEP_S = 0.25  # 17.5 s of work, across the outage
# Longer than the default reap_after_s (10 s): heartbeats stop too, for everyone.
OUTAGE_S = 12.0
DB_TIMEOUT_S = 2.0
PROBE_EVERY_S = 0.5  # paces the probes made during the outage; it waits for nothing


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
        under_way = asyncio.Event()

        def on_event(event: Event) -> None:
            if event[1] == "progress" and event[2]["current"] >= 3:
                under_way.set()

        stream = asyncio.create_task(read_stream(client, job_id, on_event=on_event, into=events))
        async with asyncio.timeout(30):
            await under_way.wait()

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
        await postgres_server.start()

        async with asyncio.timeout(30):
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.1)
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
        assert await pool.fetchval("SELECT count(*) FROM workers") == 1
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
    assert "job.requeued" not in worker.output
