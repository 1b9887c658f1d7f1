"""`GET /stats/trends`: the jobs that finished in the last hour, per minute by outcome, with
wait and run percentiles overall and per task and queue, read with a bounded query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.servers import ServerHandle
from tidings.core.db import trends
from tidings.core.job_filter import JobFilter


@pytest.fixture
async def client(server: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def finished(
    pool: asyncpg.Pool,
    *,
    task: str,
    status: str,
    minutes_ago: float,
    wait_s: float,
    run_s: float,
    queue: str = "default",
    tenant: str = "default",
    now: datetime | None = None,
) -> None:
    """A job that waited `wait_s` once due, ran `run_s` and ended `minutes_ago` before `now`."""
    end = (now or datetime.now(UTC)) - timedelta(minutes=minutes_ago)
    started = end - timedelta(seconds=run_s)
    await pool.execute(
        """INSERT INTO jobs (id, task, queue, tenant, status, run_at, started_at, finished_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        uuid.uuid4(),
        task,
        queue,
        tenant,
        status,
        started - timedelta(seconds=wait_s),
        started,
        end,
    )


@pytest.fixture(scope="module")
async def history(pool: asyncpg.Pool) -> None:
    """Ten `resize` jobs 5 minutes ago (two failed), four `export` jobs 30 minutes ago, one
    job 2 hours ago (outside the window), and one of another tenant."""
    now = datetime.now(UTC)  # one instant for the ten, so they end in one minute
    for n in range(10):
        await finished(
            pool,
            task="resize",
            queue="images",
            status="failed" if n < 2 else "succeeded",
            minutes_ago=5,
            wait_s=0.1 * (n + 1),
            run_s=1.0 * (n + 1),
            now=now,
        )
    for _ in range(4):
        await finished(pool, task="export", status="cancelled", minutes_ago=30, wait_s=2, run_s=3)
    await finished(pool, task="resize", status="failed", minutes_ago=120, wait_s=1, run_s=1)
    await finished(
        pool, task="resize", status="failed", minutes_ago=1, wait_s=1, run_s=1, tenant="other"
    )


async def read(client: httpx.AsyncClient, **query: str) -> dict[str, Any]:
    response = await client.get("/stats/trends", params=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_each_minute_of_the_hour_counts_its_outcomes(
    client: httpx.AsyncClient, history: None
) -> None:
    body = await read(client)
    minutes = body["per_minute"]
    assert len(minutes) == 60
    totals = {
        outcome: sum(minute[outcome] for minute in minutes)
        for outcome in ("succeeded", "failed", "cancelled")
    }
    assert totals == {"succeeded": 8, "failed": 2, "cancelled": 4}
    busy = [minute for minute in minutes if minute["succeeded"] or minute["failed"]]
    assert len(busy) == 1  # the resize jobs all ended in the same minute
    assert body["covered_from"] is None
    assert body["jobs_read"] == 14


async def test_percentiles_overall_and_per_task_and_queue(
    client: httpx.AsyncClient, history: None
) -> None:
    body = await read(client)
    tasks = {row["task"]: row for row in body["tasks"]}
    assert list(tasks) == ["resize", "export"]  # the busiest first
    resize = tasks["resize"]
    assert (resize["jobs"], resize["failed"]) == (10, 2)
    assert resize["run_p50_s"] == pytest.approx(5.5)
    assert resize["run_p95_s"] == pytest.approx(9.55)
    assert resize["wait_p50_s"] == pytest.approx(0.55)
    assert tasks["export"]["cancelled"] == 4
    queues = {row["queue"]: row["jobs"] for row in body["queues"]}
    assert queues == {"images": 10, "default": 4}
    assert body["overall"]["jobs"] == 14


async def test_a_filter_and_a_shorter_window_narrow_the_trends(
    client: httpx.AsyncClient, history: None
) -> None:
    only_export = await read(client, task="export")
    assert [row["task"] for row in only_export["tasks"]] == ["export"]
    last_quarter = await read(client, window="15m")
    assert len(last_quarter["per_minute"]) == 15
    assert last_quarter["overall"]["jobs"] == 10
    by_prefix = await read(client, queue_prefix="ima")
    assert by_prefix["overall"]["jobs"] == 10


@pytest.mark.parametrize(
    ("query", "field"), [({"window": "2d"}, "window"), ({"task_contains": "x"}, "task_contains")]
)
async def test_bad_queries_are_a_422(
    client: httpx.AsyncClient, query: dict[str, str], field: str
) -> None:
    response = await client.get("/stats/trends", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


async def test_past_the_row_cap_the_trends_say_where_they_start(
    pool: asyncpg.Pool, history: None
) -> None:
    body = await trends.trends(pool, tenant="default", job_filter=JobFilter(), window_s=3600, cap=5)
    assert body["jobs_read"] == 5
    assert body["covered_from"] is not None
    # The newest jobs are the ones read: the resize jobs of 5 minutes ago.
    assert sum(minute["succeeded"] + minute["failed"] for minute in body["per_minute"]) == 5
