"""Two servers and up to three workers through PgBouncer and Sentinel, under load and faults.

Each scenario checks, from Postgres, that nothing was lost (every job succeeded), nothing
ran twice (one `started` per job) and every history is gapless, and that each client's
stream got the job's stored history exactly: every event once, in order. What it measured
(jobs/s, the stall a fault caused, events checked) is printed in the suite's table.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.chaos.checks import Event, histories
from tests.chaos.conftest import Cluster
from tests.cluster.engines import PgBouncer, SentinelRedis
from tests.cluster.load import (
    Servers,
    Stream,
    assert_each_ran_once,
    assert_stream_matches,
    finish_times,
    handed_back_unrun,
    job_ids,
    longest_gap_after,
    throughput,
    until_all_finished,
)
from tests.cluster.report import ScenarioRow
from tests.support.servers import Process, free_port
from tidings.worker.unclaimed import UNCLAIMED_AFTER_S

# Each scenario's own bound: its processes start in seconds, its load takes tens of seconds.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

SERVERS, WORKERS = 2, 3
FINISH_WITHIN_S = 180.0
# A job whose stream stays open for a few seconds, reporting progress as it goes.
STREAMED = {"steps": 20, "delay_s": 0.15}

Record = Callable[[ScenarioRow], None]


async def start_servers(processes: Cluster, count: int = SERVERS) -> dict[str, Process]:
    """`count` server processes, each on a port of its own, by base URL."""
    ports = [processes.settings.port] + [free_port() for _ in range(count - 1)]
    return {f"http://127.0.0.1:{port}": await processes.server(port=port) for port in ports}


def count_lines(process: Process, needle: str) -> int:
    return sum(needle in line for line in process.lines)


@dataclass
class Checked:
    """What a scenario's closing checks counted."""

    jobs: int
    events: int
    jobs_per_s: float


async def check_everything(db: asyncpg.Pool, ids: list[str], streams: list[Stream]) -> Checked:
    """Nothing lost, nothing run twice, gapless histories, and streams that match them."""
    await until_all_finished(db, ids, within_s=FINISH_WITHIN_S)
    stored_events = await assert_each_ran_once(db, ids)
    stored = await histories(db, [uuid.UUID(stream.job_id) for stream in streams])
    for stream in streams:
        assert_stream_matches(stream, stored[uuid.UUID(stream.job_id)])
    streamed_events = sum(len(stream.events) for stream in streams)
    return Checked(len(ids), stored_events + streamed_events, await throughput(db, ids))


async def open_streams(
    servers: Servers, count: int, *, on_event: Callable[[Event], None] = lambda _e: None
) -> tuple[list[str], list[asyncio.Task[Stream]]]:
    """`count` streamed jobs, each followed by a client, spread over the servers."""
    ids = await servers.open_jobs(count, "sleep_steps", STREAMED)
    tasks = [
        asyncio.create_task(servers.follow(job_id, first=index, on_event=on_event))
        for index, job_id in enumerate(ids)
    ]
    return ids, tasks


async def under_fault(
    db: asyncpg.Pool,
    processes: Cluster,
    fault: Callable[[], Awaitable[None]],
    *,
    jobs: int = 2_000,
    per_s: float = 300.0,
    streams: int = 40,
    fault_after_s: float = 2.0,
) -> tuple[Checked, float, int]:
    """Paced load with streams on every server; `fault()` runs mid-load. Returns the checks
    the stall (the longest time after the fault in which no job finished, leaving out the
    jobs handed back after a lost claim reply) and how many were handed back."""
    servers_up = await start_servers(processes)
    for _ in range(WORKERS):
        await processes.worker()
    async with Servers(list(servers_up)) as servers:
        stream_ids, followers = await open_streams(servers, streams)
        load = asyncio.create_task(servers.submit_many(jobs, "noop", {}, per_s=per_s))
        await asyncio.sleep(fault_after_s)  # the load's own pace: the fault lands mid-load
        assert not load.done()
        fault_at = datetime.now(UTC)
        await fault()
        keys = await load
        read = await asyncio.gather(*followers)
    ids = await job_ids(db, keys)
    checked = await check_everything(db, [*ids, *stream_ids], read)
    # The stall of the load itself; jobs whose claim reply was cut wait out the heartbeat's
    # grace on top, and are counted apart.
    handed_back = await handed_back_unrun(db, ids)
    unhindered = [job_id for job_id in ids if job_id not in handed_back]
    stall = longest_gap_after(await finish_times(db, unhindered), fault_at)
    return checked, stall, len(handed_back)


async def test_1_steady_load_over_two_servers(
    processes: Cluster, db: asyncpg.Pool, record: Record
) -> None:
    servers_up = await start_servers(processes)
    for _ in range(WORKERS):
        await processes.worker()
    async with Servers(list(servers_up)) as servers:
        stream_ids, followers = await open_streams(servers, 100)
        keys = await servers.submit_many(5_000, "noop", {})
        read = await asyncio.gather(*followers)
    ids = await job_ids(db, keys)
    checked = await check_everything(db, [*ids, *stream_ids], read)
    noop_rate = await throughput(db, ids)
    record(
        ScenarioRow(
            "1 steady load",
            checked.jobs,
            noop_rate,
            None,
            len(read),
            checked.events,
            "5,000 noops in batches of 25 over 8 connections",
        )
    )


async def test_2_redis_primary_killed_sentinels_promote_the_replica(
    processes: Cluster, db: asyncpg.Pool, sentinel_redis: SentinelRedis, record: Record
) -> None:
    promoted_in: list[float] = []

    async def kill_primary() -> None:
        killed = time.monotonic()
        await sentinel_redis.kill_primary()
        await sentinel_redis.until_promoted()
        promoted_in.append(time.monotonic() - killed)

    checked, stall, handed_back = await under_fault(db, processes, kill_primary)
    record(
        ScenarioRow(
            "2 Redis primary SIGKILLed",
            checked.jobs,
            checked.jobs_per_s,
            stall,
            40,
            checked.events,
            f"replica promoted {promoted_in[0]:.1f} s after the kill; "
            f"{handed_back} claims handed back",
        )
    )


async def test_3_pgbouncer_restarted_mid_load(
    processes: Cluster, db: asyncpg.Pool, pgbouncer: PgBouncer, record: Record
) -> None:
    checked, stall, handed_back = await under_fault(db, processes, pgbouncer.restart)
    record(
        ScenarioRow(
            "3 PgBouncer restarted",
            checked.jobs,
            checked.jobs_per_s,
            stall,
            40,
            checked.events,
            "every connection cut at once; "
            f"{handed_back} claims whose reply was cut handed back after {UNCLAIMED_AFTER_S:g} s",
        )
    )


async def test_4_a_server_killed_under_200_streams_clients_resume_on_the_other(
    processes: Cluster, db: asyncpg.Pool, record: Record
) -> None:
    servers_up = await start_servers(processes)
    first = next(iter(servers_up.values()))
    streams = 200
    for _ in range(WORKERS):
        await processes.worker(concurrency=streams)  # every streamed job runs at once
    long_job = {"steps": 40, "delay_s": 0.25}  # 10 s: every stream is open at the kill
    under_way: set[str] = set()
    all_under_way = asyncio.Event()
    async with Servers(list(servers_up)) as servers:
        ids = await servers.open_jobs(streams, "sleep_steps", long_job)

        def follower(job_id: str) -> Awaitable[Stream]:
            def on_event(event: Event) -> None:
                if event[1] == "progress":
                    under_way.add(job_id)
                    if len(under_way) == streams:
                        all_under_way.set()

            return servers.follow(job_id, first=0, on_event=on_event)  # all on the first

        followers = [asyncio.create_task(follower(job_id)) for job_id in ids]
        async with asyncio.timeout(60):
            await all_under_way.wait()
        killed_at = datetime.now(UTC)
        first.signal(signal.SIGKILL)
        read = await asyncio.gather(*followers)
    checked = await check_everything(db, ids, read)
    # Each stream was open on the killed server and finished on the other.
    assert [stream.connections for stream in read] == [2] * streams
    stall = longest_gap_after(await finish_times(db, ids), killed_at)
    record(
        ScenarioRow(
            "4 server SIGKILLed under 200 streams",
            checked.jobs,
            checked.jobs_per_s,
            stall,
            streams,
            checked.events,
            "each stream resumed once, on the other server",
        )
    )


async def test_5_workers_scaled_from_one_to_three_and_back(
    processes: Cluster, db: asyncpg.Pool, record: Record
) -> None:
    servers_up = await start_servers(processes)
    await processes.worker()
    short = {"steps": 2, "delay_s": 0.05}
    async with Servers(list(servers_up)) as servers:
        load = asyncio.create_task(servers.submit_many(2_400, "sleep_steps", short, per_s=300))
        await asyncio.sleep(2.0)
        added = await asyncio.gather(*(processes.worker() for _ in range(2)))
        await asyncio.sleep(2.0)
        # SIGTERM: each drains what it runs and hands back what it holds; none is lost.
        busy = sum(count_lines(worker, "job.started") for worker in added)
        codes = await asyncio.gather(*(worker.stop() for worker in added))
        keys = await load
    assert codes == [0, 0]
    assert busy > 0  # the added workers ran jobs before they were stopped
    ids = await job_ids(db, keys)
    checked = await check_everything(db, ids, [])
    record(
        ScenarioRow(
            "5 workers 1 -> 3 -> 1 (SIGTERM)",
            checked.jobs,
            checked.jobs_per_s,
            None,
            0,
            checked.events,
            "short progress jobs; two workers drained mid-load",
        )
    )
