"""How an open SSE stream lives and ends on the real server: keep-alive comments from the
process-wide timer, a client that leaves, a server that shuts down, and HEAD.

Every job here waits on a queue no worker reads, so its stream stays open and idle, as
thousands do on a busy server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import submit, until
from tests.support.servers import ServerHandle, WorkerHandle, start_server
from tests.support.sse import job_events
from tidings.core.settings import Settings

WITHIN_S = 10.0
PARKED = "parked"


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    # The worker registers the tasks; it reads no job here (they wait on another queue).
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


async def idle_job(client: httpx.AsyncClient) -> str:
    """A queued job that stays queued: its stream has one event, then waits."""
    return str((await submit(client, "noop", queue=PARKED))["id"])


async def none_open(client: httpx.AsyncClient) -> bool:
    """Whether the server holds no stream now, from its metrics."""
    metrics = text_string_to_metric_families((await client.get("/metrics")).text)
    [gauge] = [family for family in metrics if family.name == "tidings_sse_streams"]
    return gauge.samples[0].value == 0


async def test_an_idle_stream_gets_keep_alive_comments_and_nothing_else(
    client: httpx.AsyncClient,
) -> None:
    job_id = await idle_job(client)
    lines: list[str] = []
    async with (
        asyncio.timeout(WITHIN_S),
        client.stream("GET", f"/jobs/{job_id}/events") as response,
    ):
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith(":"):
                break
    # The `queued` event, then (the module's settings tick every second) a comment.
    assert lines[:2] == ["id: 1", "event: queued"] and lines[2].startswith("data: ")
    assert lines[3:] == ["", ": ping"]


async def test_a_client_that_leaves_gives_back_its_stream_slot(
    settings: Settings, worker: WorkerHandle
) -> None:
    one_each = replace(settings, max_streams_per_tenant=1)
    async with (
        start_server(one_each) as handle,
        httpx.AsyncClient(base_url=handle.url, timeout=WITHIN_S) as client,
    ):
        job_id = await idle_job(client)
        async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
            # Held, not a temporary: a discarded generator is closed by asyncio, and closing
            # it closes the response, so the client would leave before the second request.
            events = job_events(source)
            assert (await anext(events))[1] == "queued"
            # Only the status is read: a stream answered by mistake would never end.
            async with client.stream("GET", f"/jobs/{job_id}/events") as refused:
                assert refused.status_code == 429
        # Gone without waiting for the next keep-alive: the server notices the disconnect.

        async def reopened() -> bool:
            async with client.stream("GET", f"/jobs/{job_id}/events") as again:
                return again.status_code == 200

        await until(reopened, WITHIN_S)
        await until(lambda: none_open(client), WITHIN_S)


async def test_shutting_down_ends_open_streams_cleanly(
    settings: Settings, worker: WorkerHandle
) -> None:
    running = start_server(settings)
    handle = await running.__aenter__()
    stopping: asyncio.Task[bool | None] | None = None
    try:
        async with httpx.AsyncClient(base_url=handle.url, timeout=WITHIN_S) as client:
            job_id = await idle_job(client)
            async with (
                asyncio.timeout(WITHIN_S),
                aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source,
            ):
                events = job_events(source)
                assert (await anext(events))[1] == "queued"
                stopping = asyncio.create_task(running.__aexit__(None, None, None))
                # The body is finished, not cut: httpx would raise on a broken one.
                assert [event async for event in events] == []
                async with asyncio.timeout(WITHIN_S):
                    await stopping
    finally:
        if stopping is None:
            await running.__aexit__(None, None, None)


async def test_head_sends_the_stream_headers_only_and_holds_no_slot(
    client: httpx.AsyncClient,
) -> None:
    job_id = await idle_job(client)
    async with asyncio.timeout(WITHIN_S):
        response = await client.head(f"/jobs/{job_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.content == b""
    await until(lambda: none_open(client), WITHIN_S)
