"""8. Cancel of a running job -> its `cancelled` event at an SSE client.

Each sample submits a job that holds until cancelled, follows its stream until the job
reports, then POSTs the cancel and times until the stream delivers `cancelled`: the
server's request, the cancel channel to the worker, the task's cancellation, the write
of the event and its way back. A running job is to be cancelled within 1 s.
"""

from __future__ import annotations

import asyncio
import time

from bench.http import Connection, EventStream
from bench.report import Row, Target, latency_rows
from bench.runner import Bench
from bench.services import RunningServer

SCENARIO = "8 cancel -> cancelled"
TARGET_P99 = Target(at_most=1000.0)


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    async with bench.services.server() as server, bench.services.worker():
        await cancel_latency(bench, server)  # warm-up
        reps = [
            [await cancel_latency(bench, server) for _ in range(config.cancel_samples)]
            for _ in range(config.reps)
        ]
    note = f"{config.cancel_samples} running jobs cancelled one at a time, median of {config.reps}"
    return latency_rows(SCENARIO, reps, note, None, TARGET_P99)


async def cancel_latency(bench: Bench, server: RunningServer) -> float:
    """Seconds from the cancel request to the `cancelled` event at the stream's client."""
    job_id = await bench.jobs.submit("hold")
    stream = await EventStream.open(server.host, server.port, f"/jobs/{job_id}/events")
    connection = Connection(server.host, server.port)
    try:
        async with asyncio.timeout(30):
            events = stream.events()
            async for event in events:
                if event.event == "progress":
                    break
            requested = time.time()
            response = await connection.request("POST", f"/jobs/{job_id}/cancel")
            if response.status != 202:
                raise RuntimeError(f"cancel answered {response.status}")
            async for event in events:
                if event.event == "cancelled":
                    return event.received_at - requested
    finally:
        await connection.close()
        await stream.close()
    raise RuntimeError(f"the stream of {job_id} ended without `cancelled`")
