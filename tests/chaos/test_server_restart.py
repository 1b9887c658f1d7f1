"""The server restarted while a client streams: the client comes back with Last-Event-ID
to the new process and gets every event exactly once, in order, including those made
while no server was up."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import httpx
import pytest

from tests.chaos.checks import Event, assert_gapless, poll_until, progress_of, read_stream
from tests.chaos.conftest import Cluster

pytestmark = pytest.mark.chaos

STEPS, STEP_S = 40, 0.15  # 6 s: the job outlives the restart


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_client_resumes_across_a_server_restart_with_every_event_once(
    cluster: Cluster, db: asyncpg.Pool, stop: signal.Signals
) -> None:
    first_server = await cluster.server()
    await cluster.worker()
    before: list[Event] = []
    under_way = asyncio.Event()

    def on_event(event: Event) -> None:
        if event[1] == "progress" and event[2]["current"] >= 3:
            under_way.set()

    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        response = await client.post(
            "/jobs", json={"task": "sleep_steps", "args": {"steps": STEPS, "delay_s": STEP_S}}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        stream = asyncio.create_task(read_stream(client, job_id, on_event=on_event, into=before))
        async with asyncio.timeout(30):
            await under_way.wait()

        first_server.signal(stop)
        async with asyncio.timeout(30):
            if stop == signal.SIGTERM:
                await stream  # a clean end
            else:
                with pytest.raises(httpx.TransportError):
                    await stream  # a cut connection
            assert await first_server.proc.wait() == (0 if stop == signal.SIGTERM else -stop)
            last_seen = before[-1][0]

        async def job_moved_on() -> bool:
            seq: int = await db.fetchval("SELECT seq FROM jobs WHERE id = $1", job_id)
            return seq > last_seen

        # The job goes on without a server; its next events exist only in Postgres.
        await poll_until(job_moved_on)

        await cluster.server()
        async with asyncio.timeout(30):
            after = await read_stream(client, job_id, last_event_id=last_seen)

    assert before and after
    assert after[0][0] == last_seen + 1
    events = before + after
    assert_gapless(events)
    assert [kind for _, kind, _ in events] == [
        "queued",
        "started",
        *["progress"] * STEPS,
        "succeeded",
    ]
    assert progress_of(events, 1) == [float(step) for step in range(1, STEPS + 1)]
