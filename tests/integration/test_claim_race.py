"""Claim-time limits hold when many claimers race for the same limited work.

Each round releases every claimer at once (a barrier), and each claims inside a
transaction it keeps open until all of them have claimed: under READ COMMITTED that is the
widest window in which two claims can miss each other's running job. Between rounds one
running job ends, so later claims compete for freed slots. The peak number of running
jobs is then read back from the event history (`started` to the job's end), so a limit
that loses its serialisation shows up as an instant with too many running, whichever
claimer caused it.

A new claim-time limit (a concurrency key, a rate limit) gets its own `LimitCase`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db import jobs
from tidings.core.db.pool import create_pool
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter

CLAIMERS = 8
ROUNDS = 12
JOBS = 40
CLAIMS_PER_CALL = 2  # each claimer asks for more than one, as a worker with free slots does
TERMINAL = ("succeeded", "failed", "cancelled", "requeued", "retrying")


@dataclass(frozen=True)
class LimitCase:
    """One claim-time limit: the claim's `limits` argument and the jobs it bounds."""

    name: str
    task: str
    limits: dict[str, int]
    limit: int


CASES = [LimitCase("max_concurrency", "limited", {"limited": 2}, 2)]


@pytest.fixture
async def claimers(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """One connection per claimer, so every claim is its own transaction at once."""
    pool = await create_pool(settings.database_url, min_size=CLAIMERS, max_size=CLAIMERS)
    yield pool
    await pool.close()


async def claim_together(
    conn: asyncpg.Connection,
    case: LimitCase,
    queue_name: str,
    worker_id: str,
    start: asyncio.Barrier,
    all_claimed: asyncio.Barrier,
) -> list[asyncpg.Record]:
    """Claim as a worker does, released with the others; commit only once all claimed."""
    await start.wait()
    async with conn.transaction():
        rows = await jobs.claim_jobs(
            conn,
            queue=queue_name,
            worker_id=worker_id,
            limits=case.limits,
            count=CLAIMS_PER_CALL,
            tasks=[case.task],
        )
        await all_claimed.wait()
    return rows


def running_peak(events: list[asyncpg.Record]) -> int:
    """The most jobs running at one instant, from `started` events and the events that end
    an attempt (at equal times an end counts first: a slot must be free to be taken)."""
    changes = sorted(
        (event["at"], 0 if event["kind"] in TERMINAL else 1, event["kind"]) for event in events
    )
    running = peak = 0
    for _, _, kind in changes:
        running += 1 if kind == "started" else -1 if kind in TERMINAL else 0
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_racing_claimers_never_run_more_than_the_limit(
    case: LimitCase,
    settings: Settings,
    pool: asyncpg.Pool,
    claimers: asyncpg.Pool,
    redis: ArqRedis,
) -> None:
    queue_name = f"race-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))
    for _ in range(JOBS):
        request = JobRequest(
            task=case.task, args={}, queue=queue_name, max_attempts=1, timeout_s=60
        )
        await submitter.submit(request)

    peaks_seen = []
    for round_number in range(ROUNDS):
        start, all_claimed = asyncio.Barrier(CLAIMERS), asyncio.Barrier(CLAIMERS)
        connections = [await claimers.acquire() for _ in range(CLAIMERS)]
        try:
            await asyncio.gather(
                *(
                    claim_together(
                        conn, case, queue_name, f"w{round_number}-{i}", start, all_claimed
                    )
                    for i, conn in enumerate(connections)
                )
            )
        finally:
            for conn in connections:
                await claimers.release(conn)
        running = await pool.fetch(
            "SELECT id, attempt FROM jobs WHERE queue = $1 AND status = 'running' "
            "ORDER BY started_at, id",
            queue_name,
        )
        peaks_seen.append(len(running))
        if running:  # free one slot for the next round
            oldest = running[0]
            ended = await jobs.succeed(
                pool, job_id=oldest["id"], attempt=oldest["attempt"], result={"ok": 1}
            )
            assert ended is not None

    events = await pool.fetch(
        "SELECT e.kind, e.at FROM job_history e JOIN jobs j ON j.id = e.job_id WHERE j.queue = $1",
        queue_name,
    )
    assert running_peak(events) <= case.limit, f"running per round: {peaks_seen}"
    # Not vacuous: the claimers did fill the limit, and kept taking freed slots.
    assert max(peaks_seen) == case.limit
    started = sum(1 for event in events if event["kind"] == "started")
    assert started >= ROUNDS, f"only {started} claims in {ROUNDS} rounds"


def test_the_peak_is_read_from_overlapping_attempts() -> None:
    """The history reader itself: two overlapping attempts peak at 2, back-to-back at 1."""

    def event(kind: str, at: float) -> dict[str, Any]:
        return {"kind": kind, "at": at}

    overlapping = [event("started", 1), event("started", 2), event("succeeded", 3)]
    back_to_back = [event("started", 1), event("succeeded", 2), event("started", 2)]
    assert running_peak(overlapping) == 2  # type: ignore[arg-type]
    assert running_peak(back_to_back) == 1  # type: ignore[arg-type]
