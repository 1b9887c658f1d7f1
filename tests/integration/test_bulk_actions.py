"""`POST /jobs/bulk`: cancel and retry chosen jobs, and retry every failed job of a filter,
bounded, idempotent, one outcome per job, and only ever the caller's own jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from tests.support.servers import ServerHandle
from tidings.core import bulk, queue
from tidings.core.settings import Settings


@pytest.fixture
async def client(server: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def make_job(
    pool: asyncpg.Pool,
    status: str,
    *,
    task: str = "noop",
    tenant: str = "default",
    finished_ago_s: float = 60.0,
) -> str:
    """A job in `status`, on a queue no worker reads, as if it had got there by itself."""
    job_id = uuid.uuid4()
    finished = datetime.now(UTC) - timedelta(seconds=finished_ago_s)
    await pool.execute(
        """INSERT INTO jobs (id, task, queue, tenant, status, seq, error, finished_at)
           VALUES ($1, $2, 'bulk_parked', $3, $4, 1, $5, $6)""",
        job_id,
        task,
        tenant,
        status,
        {"type": "Boom", "message": "boom", "traceback": None} if status == "failed" else None,
        finished if status in ("failed", "cancelled", "succeeded") else None,
    )
    await pool.execute(
        "INSERT INTO job_events (job_id, seq, kind, status, attempt)"
        " VALUES ($1, 1, 'queued', 'queued', 1)",
        job_id,
    )
    return str(job_id)


async def post_bulk(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/jobs/bulk", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def outcomes(answer: dict[str, Any]) -> dict[str, str]:
    return {item["id"]: item["outcome"] for item in answer["results"]}


async def status_of(pool: asyncpg.Pool, job_id: str) -> tuple[str, int]:
    row = await pool.fetchrow("SELECT status, attempt FROM jobs WHERE id = $1", uuid.UUID(job_id))
    assert row is not None
    return row["status"], row["attempt"]


async def test_retrying_selected_jobs_twice_retries_each_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    failed = [await make_job(pool, "failed") for _ in range(3)]
    cancelled = await make_job(pool, "cancelled")
    succeeded = await make_job(pool, "succeeded")
    ids = [*failed, cancelled, succeeded, str(uuid.uuid4())]

    first = await post_bulk(client, {"action": "retry", "ids": ids})
    assert outcomes(first) == {
        **{job_id: "retried" for job_id in [*failed, cancelled]},
        succeeded: "skipped",
        ids[-1]: "not_found",
    }
    assert first["counts"] == {"retried": 4, "skipped": 1, "not_found": 1}
    for job_id in [*failed, cancelled]:
        assert await status_of(pool, job_id) == ("queued", 2)
        # Its new attempt's token is on the queue, for a worker to pick up.
        key = queue.arq_job_id(job_id, 2)
        assert await redis.zscore(queue.Names(settings.namespace).queue("bulk_parked"), key)

    second = await post_bulk(client, {"action": "retry", "ids": ids})
    assert set(outcomes(second).values()) == {"skipped", "not_found"}
    assert {item["status"] for item in second["results"] if item["id"] in failed} == {"queued"}
    for job_id in failed:
        assert await status_of(pool, job_id) == ("queued", 2)


async def test_cancelling_selected_jobs_cancels_waiting_ones_and_tells_running_ones(
    client: httpx.AsyncClient, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    queued = await make_job(pool, "queued")
    running = await make_job(pool, "running")
    done = await make_job(pool, "succeeded")
    names = queue.Names(settings.namespace)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(names.cancel_channel)
        answer = await post_bulk(client, {"action": "cancel", "ids": [queued, running, done]})
        told = []
        async with asyncio.timeout(5):
            async for message in pubsub.listen():
                if message["type"] == "message":
                    told.append(message["data"].decode())
                    break
    assert outcomes(answer) == {
        queued: "cancelled",
        running: "cancel_requested",
        done: "skipped",
    }
    assert told == [running]
    assert (await status_of(pool, queued))[0] == "cancelled"
    assert await pool.fetchval(
        "SELECT cancel_requested_at IS NOT NULL FROM jobs WHERE id = $1", uuid.UUID(running)
    )
    # The cancelled job's event is stored, as a single cancel stores it.
    kinds = await pool.fetch(
        "SELECT kind FROM job_events WHERE job_id = $1 ORDER BY seq", uuid.UUID(queued)
    )
    assert [row["kind"] for row in kinds] == ["queued", "cancelled"]


async def test_another_tenants_jobs_are_never_touched(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    theirs = [
        await make_job(pool, "failed", tenant="other"),
        await make_job(pool, "queued", tenant="other"),
    ]
    for action in ("retry", "cancel"):
        answer = await post_bulk(client, {"action": action, "ids": theirs})
        assert set(outcomes(answer).values()) == {"not_found"}
        assert {item["status"] for item in answer["results"]} == {None}
    assert [await status_of(pool, job_id) for job_id in theirs] == [("failed", 1), ("queued", 1)]
    retried = await post_bulk(
        client, {"action": "retry", "filter": {"task": "noop"}, "failed_before": None}
    )
    assert not set(outcomes(retried)) & set(theirs)
    assert (await status_of(pool, theirs[0]))[0] == "failed"


async def test_retry_all_failed_of_a_filter_is_bounded_and_idempotent(
    client: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    matching = [await make_job(pool, "failed", task="filtered_export") for _ in range(5)]
    other_task = await make_job(pool, "failed", task="unfiltered")
    later = await make_job(pool, "failed", task="filtered_export", finished_ago_s=-60)
    body = {
        "action": "retry",
        "filter": {"task_prefix": "filtered_"},
        "failed_before": datetime.now(UTC).isoformat(),
    }
    monkeypatch.setattr(bulk, "MAX_JOBS", 3)
    first = await post_bulk(client, body)
    assert list(outcomes(first)) == matching[:3]  # the oldest first
    assert first["more"] is True
    second = await post_bulk(client, body)
    assert list(outcomes(second)) == matching[3:]
    assert second["more"] is False
    third = await post_bulk(client, body)
    assert third["results"] == []
    assert third["more"] is False
    assert (await status_of(pool, other_task))[0] == "failed"
    # It failed after the request's `failed_before`: the dashboard's repeat leaves it.
    assert (await status_of(pool, later))[0] == "failed"
    for job_id in matching:
        assert await status_of(pool, job_id) == ("queued", 2)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "delete", "ids": [str(uuid.uuid4())]}, "action"),
        ({"ids": [str(uuid.uuid4())]}, "action"),
        ({"action": "retry"}, "ids"),
        ({"action": "retry", "ids": [], "filter": {}}, "ids"),
        ({"action": "retry", "ids": []}, "ids"),
        ({"action": "retry", "ids": "abc"}, "ids"),
        ({"action": "retry", "ids": [str(uuid.uuid4()), "not-an-id"]}, "ids[1]"),
        ({"action": "retry", "ids": [7]}, "ids[0]"),
        ({"action": "cancel", "filter": {"task": "noop"}}, "filter"),
        ({"action": "retry", "filter": "all"}, "filter"),
        ({"action": "retry", "filter": {"tsk": "noop"}}, "filter.tsk"),  # never "all"
        ({"action": "retry", "ids": [str(uuid.uuid4())], "failed_before": None}, "failed_before"),
        ({"action": "retry", "filter": {}, "force": True}, "force"),
        ({"action": "retry", "filter": {"status": "succeeded"}}, "filter.status"),
        ({"action": "retry", "filter": {"task_contains": "no"}}, "task_contains"),
        ({"action": "retry", "filter": {"created_after": "soon"}}, "created_after"),
        ({"action": "retry", "filter": {"task": 3}}, "task"),
        ({"action": "retry", "filter": {}, "failed_before": "2026-01-01"}, "failed_before"),
    ],
)
async def test_bad_requests_are_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs/bulk", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


async def test_more_ids_than_the_bound_are_refused_whole(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job_id = await make_job(pool, "failed")
    ids = [job_id] + [str(uuid.uuid4()) for _ in range(bulk.MAX_JOBS)]
    response = await client.post("/jobs/bulk", json={"action": "retry", "ids": ids})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {
        "field": "ids",
        "reason": f"got {bulk.MAX_JOBS + 1}",
    }
    assert await status_of(pool, job_id) == ("failed", 1)
