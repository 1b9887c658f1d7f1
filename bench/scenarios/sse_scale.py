"""7. SSE at scale: thousands of open streams on idle jobs, one server process.

The jobs wait on a queue no worker consumes. Each stream counts as open once its
`queued` event arrived (the server subscribes before it replays, so it is then
listening). Memory is the server's RSS growth over the streams opened after a warm-up
batch; pub/sub connections are the server's subscribed Redis clients. Then every job is
cancelled the way `POST /jobs/{id}/cancel` does it, batched so the burst of events is
limited by the relay rather than by the HTTP cancels, and each stream must receive its
`cancelled` event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence

from bench.http import EventStream, SseEvent
from bench.probes import rss_bytes
from bench.report import Row, Target
from bench.runner import Bench
from bench.services import RunningServer

SCENARIO = "7 SSE at scale"
QUEUE = "bench-idle"
TARGET_STREAMS = 10_000
WARMUP_STREAMS = 100
OPEN_WITHIN_S = 300.0
RELAY_WITHIN_S = 120.0
CANCEL_CHUNK_NOTE = "1,000 a transaction"


class StreamSet:
    """Open SSE streams, each followed until its `cancelled` event."""

    def __init__(self, server: RunningServer) -> None:
        self._server = server
        self._followers: list[asyncio.Task[None]] = []
        self.received: dict[uuid.UUID, float] = {}

    async def open(self, job_ids: Sequence[uuid.UUID], parallel: int) -> None:
        """Open a stream per job, `parallel` at a time, each until its first event."""
        gate = asyncio.Semaphore(parallel)

        async def open_one(job_id: uuid.UUID) -> None:
            async with gate:
                path = f"/jobs/{job_id}/events"
                stream = await EventStream.open(self._server.host, self._server.port, path)
                events = stream.events()
                try:
                    first = await anext(events)
                    if first.event != "queued":
                        raise RuntimeError(f"stream of {job_id} began with {first.event}")
                except BaseException:
                    await stream.close()
                    raise
            self._followers.append(asyncio.create_task(self._follow(job_id, stream, events)))

        # A task group: if one stream is refused, the others stop opening.
        async with asyncio.TaskGroup() as group:
            for job_id in job_ids:
                group.create_task(open_one(job_id))

    async def _follow(
        self, job_id: uuid.UUID, stream: EventStream, events: AsyncIterator[SseEvent]
    ) -> None:
        try:
            async for event in events:
                if event.event == "cancelled":
                    self.received[job_id] = event.received_at
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # counted as not delivered
        finally:
            await stream.close()

    async def wait(self, within_s: float) -> None:
        if self._followers:
            await asyncio.wait(self._followers, timeout=within_s)

    async def close(self) -> None:
        for follower in self._followers:
            follower.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    count = config.sse_streams
    warmup = min(WARMUP_STREAMS, count // 10)
    job_ids = await bench.jobs.submit_many("noop", count, queue_name=QUEUE)
    async with bench.services.server() as server:
        streams = StreamSet(server)
        try:
            async with asyncio.timeout(OPEN_WITHIN_S):
                await streams.open(job_ids[:warmup], config.sse_open_parallel)
                await asyncio.sleep(0.5)
                base_rss = rss_bytes(server.service.pid)
                opening = time.perf_counter()
                await streams.open(job_ids[warmup:], config.sse_open_parallel)
                open_s = time.perf_counter() - opening
            await asyncio.sleep(1.0)
            per_stream_kib = (rss_bytes(server.service.pid) - base_rss) / (count - warmup) / 1024
            subscribers = await bench.probe.subscribers(server.service.pid)
            cancelling = time.time()
            cancelled = await bench.jobs.cancel_waiting(job_ids)
            cancel_s = time.time() - cancelling
            await streams.wait(RELAY_WITHIN_S)
        finally:
            await streams.close()
    if cancelled != count:
        raise RuntimeError(f"{cancelled} of {count} idle jobs could be cancelled")
    delivered = len(streams.received)
    relay_s = max(streams.received.values()) - cancelling if streams.received else float("nan")
    opened = f"opened in {open_s:.1f}s ({(count - warmup) / open_s:,.0f}/s)"
    if count < TARGET_STREAMS:
        opened += f"; ran with {count:,} streams (--streams)"
    return [
        Row(
            SCENARIO,
            "streams open on 1 server",
            "",
            float(count),
            target=Target(at_least=TARGET_STREAMS),
            note=f"{opened}; 1 repetition",
        ),
        Row(
            SCENARIO,
            "server memory per stream",
            "KiB",
            per_stream_kib,
            target=Target(at_most=16),
            note=f"RSS growth over {count - warmup:,} streams after {warmup} warm-up streams",
        ),
        Row(
            SCENARIO,
            "Redis pub/sub connections",
            "",
            float(subscribers),
            target=Target(at_most=1),
            note="the server's subscribed Redis connections (CLIENT LIST)",
        ),
        Row(
            SCENARIO,
            "streams that got the event",
            "%",
            100 * delivered / count,
            target=Target(at_least=100),
            note=(
                f"{delivered:,} of {count:,}: every job cancelled (committed, then published, "
                f"{CANCEL_CHUNK_NOTE}) in {cancel_s:.2f}s; the last stream had its event "
                f"{relay_s:.2f}s after the first cancel"
            ),
        ),
    ]
