"""The HTTP calls the integration tests make over and over, each asserting its status."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from tests.support.sse import job_events


async def submit(client: httpx.AsyncClient, task: str, **fields: Any) -> dict[str, Any]:
    """Submit a job that must be accepted as new (202); its JSON."""
    response = await client.post("/jobs", json={"task": task, **fields})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def get_job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's JSON, which must be found (200)."""
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def history(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    """Every event of the job, from the JSON history endpoint (200)."""
    response = await client.get(f"/jobs/{job_id}/events", headers={"accept": "application/json"})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def stream_kinds(client: httpx.AsyncClient, job_id: str) -> list[str]:
    """The kinds of the job's SSE events, until the server closes the stream."""
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
        return [kind async for _, kind, _ in job_events(source)]


async def until(check: Callable[[], Awaitable[Any]], within_s: float, every_s: float = 0.01) -> Any:
    """Await `check()` every `every_s` until it returns something truthy, for at most
    `within_s`; returns that value."""
    async with asyncio.timeout(within_s):
        # Polling is the point: the condition lives behind the API, in the database or in
        # Redis, none of which signals the test.
        while not (value := await check()):  # noqa: ASYNC110
            await asyncio.sleep(every_s)
    return value
