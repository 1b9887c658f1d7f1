"""A job's JSON history in pages: `after`/`before` and `limit`, with cursors.

Before, `GET /jobs/{id}/events` as JSON returned every event of the job at once, and the
dashboard replayed them all over SSE (a job with 3,000 events took 5.6 s to show)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.api import stream_kinds
from tests.support.servers import ServerHandle, WorkerHandle
from tidings.client import AsyncClient

JSON = {"accept": "application/json"}
STEPS = 30  # queued, started, 30 progress, succeeded: 33 events


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def finished_job(client: httpx.AsyncClient, steps: int) -> str:
    response = await client.post(
        "/jobs", json={"task": "sleep_steps", "args": {"steps": steps, "delay_s": 0}}
    )
    job_id: str = response.json()["id"]
    assert (await stream_kinds(client, job_id))[-1] == "succeeded"
    return job_id


async def page(client: httpx.AsyncClient, job_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}/events", params=params, headers=JSON)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def seqs(body: dict[str, Any]) -> list[int]:
    return [event["seq"] for event in body["events"]]


async def test_pages_forward_and_backward_with_cursors(client: httpx.AsyncClient) -> None:
    job_id = await finished_job(client, STEPS)
    first = await page(client, job_id, limit=10)
    assert seqs(first) == list(range(1, 11))
    assert first["next_after"] == 10 and first["previous_before"] is None
    second = await page(client, job_id, after=first["next_after"], limit=10)
    assert seqs(second) == list(range(11, 21))
    assert second["previous_before"] == 11
    whole = await page(client, job_id)  # the default page holds them all
    assert seqs(whole) == list(range(1, 34)) and whole["next_after"] is None
    latest = await page(client, job_id, before=34, limit=10)
    assert seqs(latest) == list(range(24, 34))
    assert latest["next_after"] is None and latest["previous_before"] == 24
    older = await page(client, job_id, before=latest["previous_before"], limit=10)
    assert seqs(older) == list(range(14, 24))
    oldest = await page(client, job_id, before=4, limit=10)
    assert seqs(oldest) == [1, 2, 3] and oldest["previous_before"] is None
    assert seqs(await page(client, job_id, after=33)) == []


async def test_bad_page_parameters_are_422s(client: httpx.AsyncClient) -> None:
    job_id = await finished_job(client, 1)
    for params in ({"limit": 0}, {"limit": 5001}, {"limit": "ten"}, {"before": 0}, {"before": "x"}):
        for accept in (JSON, {}):  # the history and the stream alike
            response = await client.get(f"/jobs/{job_id}/events", params=params, headers=accept)
            assert response.status_code == 422, (params, accept, response.text)
            assert response.json()["error"]["code"] == "invalid_query"


async def test_the_python_client_reads_every_page_of_a_long_history(
    server: ServerHandle, client: httpx.AsyncClient
) -> None:
    job_id = await finished_job(client, 2_500)  # more than one default page
    async with AsyncClient(server.url) as api:
        events = await api.history(job_id)
        tail = await api.history(job_id, after=2_400)
    assert [event.seq for event in events] == list(range(1, 2_504))
    assert [event.seq for event in tail] == list(range(2_401, 2_504))
