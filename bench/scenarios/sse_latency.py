"""5. Progress event, worker call -> SSE client, at a low rate.

`bench.tasks.progress_paced` stamps each `job.progress` call with its wall-clock time;
the client reads the job's SSE stream and takes the time it finished reading each event
minus that stamp. The whole path is in it: group commit, PUBLISH, the server's hub, the
stream's queue, the SSE write and the client's read.
"""

from __future__ import annotations

import asyncio
import uuid

from bench.http import EventStream
from bench.report import Row, Target, latency_rows
from bench.runner import Bench
from bench.services import RunningServer

SCENARIO = "5 progress -> SSE"
TARGET_P50 = Target(at_most=5.0)
TARGET_P99 = Target(at_most=20.0)
TERMINAL = ("succeeded", "failed", "cancelled")
WARMUP_EVENTS = 10


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    async with bench.services.server() as server, bench.services.worker():
        await stream_latencies(bench, server, WARMUP_EVENTS)
        reps = [
            await stream_latencies(bench, server, config.paced_events) for _ in range(config.reps)
        ]
    note = (
        f"{config.paced_events} events {config.paced_interval_s * 1000:g} ms apart, "
        f"median of {config.reps}"
    )
    return latency_rows(SCENARIO, reps, note, TARGET_P50, TARGET_P99)


async def stream_latencies(bench: Bench, server: RunningServer, count: int) -> list[float]:
    """Seconds from each progress call to its arrival at an SSE client."""
    job_id = await bench.jobs.submit(
        "progress_paced", {"count": count, "interval_s": bench.config.paced_interval_s}
    )
    latencies = await follow(server, job_id)
    if len(latencies) != count:
        raise RuntimeError(f"{len(latencies)} of {count} progress events reached the client")
    return latencies


async def follow(server: RunningServer, job_id: uuid.UUID) -> list[float]:
    stream = await EventStream.open(server.host, server.port, f"/jobs/{job_id}/events")
    latencies = []
    try:
        async with asyncio.timeout(60):
            async for event in stream.events():
                if event.event == "progress":
                    sent_at = event.json()["data"]["sent_at"]
                    latencies.append(event.received_at - sent_at)
                elif event.event in TERMINAL:
                    break
    finally:
        await stream.close()
    return latencies
