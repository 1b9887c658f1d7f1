"""A job submitted over HTTP runs on a worker and its events stream back over SSE."""

from __future__ import annotations

import httpx
from httpx_sse import aconnect_sse

from tests.support.servers import ServerHandle, WorkerHandle


async def test_sleep_steps_streams_every_event_in_order(
    server: ServerHandle, worker: WorkerHandle
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            "/jobs", json={"task": "sleep_steps", "args": {"steps": 5, "delay_s": 0.01}}
        )
        assert response.status_code == 202
        job_id = response.json()["id"]
        async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
            seen = [(int(e.id), e.event) async for e in source.aiter_sse()]
    assert [seq for seq, _ in seen] == list(range(1, 9))
    assert [kind for _, kind in seen] == ["queued", "started"] + ["progress"] * 5 + ["succeeded"]
