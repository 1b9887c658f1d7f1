"""SIGTERM: a worker drains, hands back what it could not finish and exits 0; a server
ends its SSE streams cleanly (so browsers reconnect) and exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import asyncpg
import httpx
import pytest

from tests.chaos.checks import (
    Event,
    assert_each_succeeded_once,
    assert_gapless,
    progress_of,
    read_stream,
)
from tests.chaos.conftest import Cluster, log_records

pytestmark = pytest.mark.chaos

DRAIN_S = 2.0
LONG_STEPS, SHORT_STEPS, STEP_S = 40, 4, 0.25  # 10 s: past the drain; 1 s: within it
EXIT_WITHIN_S = DRAIN_S + 5.0


async def test_sigterm_drains_the_worker_then_hands_back_the_long_job_and_exits_0(
    cluster: Cluster, db: asyncpg.Pool
) -> None:
    await cluster.server()
    stopping = await cluster.worker(drain_timeout_s=DRAIN_S)
    stopping_id = log_records(stopping, "worker.ready")[0]["worker_id"]
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        ids = {}
        for name, steps in (("long", LONG_STEPS), ("short", SHORT_STEPS)):
            response = await client.post(
                "/jobs", json={"task": "sleep_steps", "args": {"steps": steps, "delay_s": STEP_S}}
            )
            assert response.status_code == 202, response.text
            ids[name] = response.json()["id"]
        streams = {
            name: asyncio.create_task(read_stream(client, job_id)) for name, job_id in ids.items()
        }
        await cluster.until(lambda: stopping.output.count('"job.started"') == 2)

        stopping.signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with asyncio.timeout(EXIT_WITHIN_S):
            code = await stopping.proc.wait()
        exited_after_s = time.monotonic() - signalled
        assert code == 0, stopping.output

        taker = await cluster.worker()
        taker_id = log_records(taker, "worker.ready")[0]["worker_id"]
        async with asyncio.timeout(30):
            long, short = await asyncio.gather(streams["long"], streams["short"])

    # It waited for the drain, and no longer than the drain and its shutdown.
    assert DRAIN_S <= exited_after_s < EXIT_WITHIN_S, exited_after_s
    assert log_records(stopping, "worker.draining")[0]["jobs"] == 2
    requeued = log_records(stopping, "job.requeued")
    assert [(r["job_id"], r["reason"]) for r in requeued] == [(ids["long"], "worker_shutdown")]

    # The short job finished inside the drain window, on the stopping worker, untouched.
    assert_gapless(short)
    assert [kind for _, kind, _ in short] == [
        "queued",
        "started",
        *["progress"] * SHORT_STEPS,
        "succeeded",
    ]
    assert short[1][2]["data"]["worker_id"] == stopping_id

    # The long one was handed back with a `requeued` event and run to the end elsewhere.
    assert_gapless(long)
    kinds = [kind for _, kind, _ in long]
    handed_back = len(progress_of(long, 1))
    assert kinds == [
        "queued",
        "started",
        *["progress"] * handed_back,
        "requeued",
        "started",
        *["progress"] * LONG_STEPS,
        "succeeded",
    ], kinds
    assert 0 < handed_back < LONG_STEPS
    requeued_event = next(data for _, kind, data in long if kind == "requeued")
    assert requeued_event["data"] == {"reason": "worker_shutdown"}
    started = [data for _, kind, data in long if kind == "started"]
    assert [(s["attempt"], s["data"]["worker_id"]) for s in started] == [
        (1, stopping_id),
        (2, taker_id),
    ]
    assert progress_of(long, 2) == [float(step) for step in range(1, LONG_STEPS + 1)]
    await assert_each_succeeded_once(db, [uuid.UUID(job_id) for job_id in ids.values()])
    assert await db.fetchval("SELECT count(*) FROM workers WHERE id = $1", stopping_id) == 0


async def test_sigterm_to_the_server_ends_an_open_stream_cleanly_and_exits_0(
    cluster: Cluster,
) -> None:
    server = await cluster.server()
    await cluster.worker(drain_timeout_s=DRAIN_S)  # its job outlives the test
    events: list[Event] = []
    under_way = asyncio.Event()

    def on_event(event: Event) -> None:
        if event[1] == "progress":
            under_way.set()

    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        response = await client.post(
            "/jobs", json={"task": "sleep_steps", "args": {"steps": 40, "delay_s": STEP_S}}
        )
        assert response.status_code == 202, response.text
        stream = asyncio.create_task(
            read_stream(client, response.json()["id"], on_event=on_event, into=events)
        )
        async with asyncio.timeout(30):
            await under_way.wait()

        server.signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with asyncio.timeout(EXIT_WITHIN_S):
            await stream  # ends without an error: the response was finished, not cut
            ended_after_s = time.monotonic() - signalled
            code = await server.proc.wait()
        exited_after_s = time.monotonic() - signalled

    assert code == 0, server.output
    assert ended_after_s < EXIT_WITHIN_S and exited_after_s < EXIT_WITHIN_S
    # Not cut: uvicorn saw every response completed ("returned without completing
    # response" is logged as an error).
    assert '"level": "error"' not in server.output, server.output
    # The stream ended while the job still ran: a client reconnects with Last-Event-ID.
    kinds = [kind for _, kind, _ in events]
    assert kinds[:2] == ["queued", "started"] and set(kinds[2:]) == {"progress"}, kinds
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
