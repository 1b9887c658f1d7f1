"""10. Recovery: how soon lost work runs again.

- A worker SIGKILLed with jobs running: another worker, already up and idle, is running
  them again (their second `started` event) within this long of the kill. The reaper
  re-queues a worker's jobs after `TIDINGS_REAP_AFTER_S` of heartbeat silence.
- A job whose token never reached Redis (as when a server dies between commit and
  enqueue): an idle worker starts it within this long of its commit, by claiming due
  jobs straight from Postgres when nothing woke it.

Both with the default heartbeat, reap and poll settings; raw ARQ has no equivalent (a
killed ARQ worker's jobs wait for their in-progress keys to expire, and a job that never
reached Redis is never run).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
import uuid

from bench.report import Row, Target
from bench.runner import Bench
from bench.stats import median
from tidings.core.db import jobs
from tidings.core.submission import JobRequest

SCENARIO = "10 recovery"
TARGET_KILLED_P50_S = Target(at_most=5.0)
TARGET_UNTOKENED_P50_S = Target(at_most=2.0)
HELD_JOBS = 20
HOLD_S = 6.0  # each attempt of a held job; the second runs to its end before the next rep
UNTOKENED_JOBS = 10


async def run(bench: Bench) -> list[Row]:
    killed = [await killed_worker(bench) for _ in range(bench.config.reps)]
    untokened = [await without_tokens(bench) for _ in range(bench.config.reps)]
    return [
        Row(
            SCENARIO,
            "SIGKILLed worker's jobs running again, p50",
            "s",
            median([statistics.median(rep) for rep in killed]),
            target=TARGET_KILLED_P50_S,
            note=f"{HELD_JOBS} running jobs, another worker idle; median of {len(killed)}",
            reps={"tidings": [statistics.median(rep) for rep in killed]},
        ),
        Row(
            SCENARIO,
            "job without a token started, p50",
            "s",
            median([statistics.median(rep) for rep in untokened]),
            target=TARGET_UNTOKENED_P50_S,
            note=f"{UNTOKENED_JOBS} jobs committed with no token, one idle worker",
            reps={"tidings": [statistics.median(rep) for rep in untokened]},
        ),
    ]


async def killed_worker(bench: Bench) -> list[float]:
    """Seconds from the kill to each held job's second start."""
    async with bench.services.worker() as victim:
        held = {"hold_s": HOLD_S}
        ids = [await bench.jobs.submit("hold", held, max_attempts=2) for _ in range(HELD_JOBS)]
        await until_running(bench, ids)
        async with bench.services.worker():
            victim.proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            await victim.proc.wait()
            restarted = await second_starts(bench, ids)
            await bench.jobs.wait_finished(ids, within_s=HOLD_S + 30)
    return [at - killed_at for at in restarted]


async def without_tokens(bench: Bench) -> list[float]:
    """Seconds from each token-less job's commit to its start."""
    async with bench.services.worker():
        await asyncio.sleep(1.0)  # idle: its own start-up reconcile pass is over
        created = []
        for _ in range(UNTOKENED_JOBS):
            request = JobRequest(
                task="noop", args={}, queue="default", max_attempts=1, timeout_s=60
            )
            row = await jobs.insert_job(bench.jobs.pool, request.new_job(uuid.uuid4()))
            assert row is not None
            created.append(row["id"])
        await bench.jobs.wait_finished(created, within_s=30)
        return await bench.jobs.pickup_latencies(created)


# Postgres announces neither fact: both are read again every POLL_S.
POLL_S = 0.05


async def until_running(bench: Bench, ids: list[uuid.UUID], within_s: float = 30.0) -> None:
    query = "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'running'"
    async with asyncio.timeout(within_s):
        while await bench.jobs.pool.fetchval(query, ids) < len(ids):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)


async def second_starts(bench: Bench, ids: list[uuid.UUID], within_s: float = 60.0) -> list[float]:
    """When each job started its second attempt (Unix time), once all have."""
    query = (
        "SELECT job_id, extract(epoch FROM at)::float8 AS at FROM job_history"
        " WHERE job_id = ANY($1) AND kind = 'started' AND attempt = 2"
    )
    async with asyncio.timeout(within_s):
        while len(rows := await bench.jobs.pool.fetch(query, ids)) < len(ids):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
    return [row["at"] for row in rows]
