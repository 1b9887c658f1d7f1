"""15. Fair sharing: one tenant's backlog against another tenant's single jobs, and what the
round-robin claim costs.

Two workers drain tenant A's backlog of noops (100,000; 10,000 with `--quick`) while
tenant B submits one job at a time; B's jobs must start within 50 ms of submission at the
99th percentile. The same load runs with the first-come-first-served claim of migration
0005 for comparison: total jobs/s over the same window must stay at 90% of it or more.
Each claim takes its turn `reps` times, each first every other round. Then plain noop
batches (one tenant, no keys, no rate limits; five of three times the run's batch size)
alternate between the two claims: the fair claim must keep 95% of the FIFO claim's
throughput.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.connections import ArqRedis

from bench import claim_versions
from bench.backing import TOKEN_KEY_PREFIXES
from bench.report import Row, Target, latency_rows
from bench.runner import Bench
from bench.scenarios.throughput import tidings_batch
from bench.stats import median, percentile
from tidings.core import queue
from tidings.core.submission import JobRequest, Submitter

SCENARIO = "15 fair sharing"
BACKLOG = 100_000
QUICK_BACKLOG = 10_000
B_SAMPLES = 100
B_GAP_S = (0.02, 0.06)
LATENCY_P99 = Target(at_most=50.0)
BACKLOG_THROUGHPUT = Target(at_least=0.90)
PLAIN_THROUGHPUT = Target(at_least=0.95)
PLAIN_SCALE = 3  # plain batches: this many times the run's noop batch
PLAIN_REPS = 5
TENANT_A, TENANT_B = "bench-a", "bench-b"
CHUNK = 1_000

_FINISHED_IN = """
SELECT count(*) FROM jobs
WHERE tenant = ANY($1::text[]) AND finished_at >= $2 AND finished_at < $3
"""
# Skipping the rows a claim holds: waiting for them, with the backlog's rows locked in any
# order, deadlocks with a worker's commit. A claimed row is running when the next round looks.
_DROP_BACKLOG = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE tenant = ANY($1::text[]) AND status IN ('queued', 'retrying')
    FOR UPDATE SKIP LOCKED)
RETURNING id, attempt
"""
_WAITING = """
SELECT EXISTS (SELECT FROM jobs WHERE tenant = ANY($1::text[]) AND status IN ('queued', 'retrying'))
"""
_RUNNING = "SELECT id FROM jobs WHERE tenant = ANY($1::text[]) AND status = 'running'"


@dataclass(frozen=True)
class UnderBacklog:
    """One run of B's jobs against A's backlog: B's start latencies and total jobs/s."""

    latencies_s: list[float]
    rate: float


def noop(tenant: str) -> JobRequest:
    return JobRequest(
        task="noop", args={}, queue="default", max_attempts=1, timeout_s=600.0, tenant=tenant
    )


async def run(bench: Bench) -> list[Row]:
    quick = bench.config.noop_jobs < 3_000
    backlog = QUICK_BACKLOG if quick else BACKLOG
    samples = B_SAMPLES // 3 if quick else B_SAMPLES
    # A plain batch at ~3,000 jobs/s lasts a second: longer and more of them, or the 5%
    # target drowns in what one stray second costs.
    plain_jobs = bench.config.noop_jobs * (1 if quick else PLAIN_SCALE)
    plain_reps = bench.config.reps if quick else max(bench.config.reps, PLAIN_REPS)
    redis = await queue.connect(bench.backing.redis_url)
    names = queue.Names(bench.backing.namespace)
    submitter = Submitter(bench.jobs.pool, redis, names)
    runs: dict[str, list[UnderBacklog]] = {"fifo": [], "fair": []}
    plain: dict[str, list[float]] = {"fifo": [], "fair": []}
    try:
        async with AsyncExitStack() as stack:
            worker = await stack.enter_async_context(bench.services.worker())
            await stack.enter_async_context(bench.services.worker())
            for rep in range(bench.config.reps):
                for version in in_turn(rep):
                    await claim_versions.use(bench.jobs.pool, version)
                    measured_under = await under_backlog(bench, submitter, redis, backlog, samples)
                    runs[version].append(measured_under)
            await tidings_batch(bench, worker, bench.config.warmup_jobs)
            for rep in range(plain_reps):
                for version in in_turn(rep):
                    await claim_versions.use(bench.jobs.pool, version)
                    measured = await tidings_batch(bench, worker, plain_jobs)
                    plain[version].append(measured.rate)
    finally:
        await claim_versions.use(bench.jobs.pool, "fair")
        await redis.aclose()
    fifo = {
        q: median([percentile_ms(run.latencies_s, q) for run in runs["fifo"]]) for q in (50, 99)
    }
    note = (
        f"tenant A: {backlog} queued noops, 2 workers (max_jobs {bench.config.concurrency} "
        f"each); tenant B: {samples} single jobs, {B_GAP_S[0] * 1000:g}-{B_GAP_S[1] * 1000:g} "
        f"ms apart; median of {bench.config.reps} runs per claim, claims alternating; FIFO "
        f"claim: B p50 {fifo[50]:.0f} ms, p99 {fifo[99]:.0f} ms"
    )
    rows = latency_rows(
        SCENARIO, [run.latencies_s for run in runs["fair"]], note, None, LATENCY_P99
    )
    rows = [
        Row(
            row.scenario,
            f"tenant B start, A's backlog queued, {row.measure}",
            row.unit,
            row.tidings,
            target=row.target,
            note=row.note,
            reps=row.reps,
        )
        for row in rows
    ]
    rates = {version: [run.rate for run in measured] for version, measured in runs.items()}
    rows.append(
        Row(
            SCENARIO,
            "jobs/s under the backlog, fair / FIFO claim",
            "x",
            median(rates["fair"]) / median(rates["fifo"]),
            target=BACKLOG_THROUGHPUT,
            note=(
                f"fair {median(rates['fair']):.0f}/s, FIFO {median(rates['fifo']):.0f}/s, "
                f"both tenants, over each run's window, median of {bench.config.reps}"
            ),
            reps=rates,
        )
    )
    rows.append(
        Row(
            SCENARIO,
            "noop jobs/s, no keys or limits, fair / FIFO claim",
            "x",
            median(plain["fair"]) / median(plain["fifo"]),
            target=PLAIN_THROUGHPUT,
            note=(
                f"fair {median(plain['fair']):.0f}/s, FIFO {median(plain['fifo']):.0f}/s; "
                f"{plain_jobs} jobs, one tenant, 2 workers, median of {plain_reps}, claims "
                "alternating"
            ),
            reps={"fair": plain["fair"], "fifo": plain["fifo"]},
        )
    )
    return rows


async def under_backlog(
    bench: Bench, submitter: Submitter, redis: ArqRedis, backlog: int, samples: int
) -> UnderBacklog:
    """Queue A's backlog, then trickle B's jobs in while the workers drain it."""
    for start in range(0, backlog, CHUNK):
        await submitter.submit_many([noop(TENANT_A)] * min(CHUNK, backlog - start))
    window_start = datetime.now(UTC)
    started = time.monotonic()
    b_ids: list[uuid.UUID] = []
    for _ in range(samples):
        submitted = await submitter.submit(noop(TENANT_B))
        assert submitted is not None
        b_ids.append(submitted.row["id"])
        await asyncio.sleep(random.uniform(*B_GAP_S))
    window_s = time.monotonic() - started
    window_end = datetime.now(UTC)
    pool = bench.jobs.pool
    finished = await pool.fetchval(_FINISHED_IN, [TENANT_A, TENANT_B], window_start, window_end)
    # What is left of the backlog goes, with its tokens, before the next run: their queue
    # entries and their payload keys. Payloads left behind (a day's expiry) piled up to
    # hundreds of MB over a run's rounds, and an embedded Redis that snapshots them to disk
    # stalled every claim while it did.
    dropped = await pool.fetch(_DROP_BACKLOG, [TENANT_A])
    while await pool.fetchval(_WAITING, [TENANT_A]):
        dropped += await pool.fetch(_DROP_BACKLOG, [TENANT_A])
    keys = [queue.arq_job_id(row["id"], row["attempt"]) for row in dropped]
    queue_key = queue.Names(bench.backing.namespace).queue("default")
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        await redis.zrem(queue_key, *chunk)
        await redis.delete(*(prefix + key for key in chunk for prefix in TOKEN_KEY_PREFIXES))
    running = [row["id"] for row in await pool.fetch(_RUNNING, [TENANT_A])]
    await bench.jobs.wait_finished([*running, *b_ids], 120)
    # The dropped backlog's dead rows (and its events') would slow whichever claim runs
    # next, or bring autovacuum in the middle of a later measurement: vacuum them now.
    await pool.execute("VACUUM (ANALYZE) jobs")
    return UnderBacklog(await bench.jobs.pickup_latencies(b_ids), finished / window_s)


def in_turn(rep: int) -> tuple[str, str]:
    """Both claims, each first in turn: whatever the first run of a pair leaves behind
    (dead rows, a vacuum under way) falls on each claim as often."""
    return ("fifo", "fair") if rep % 2 == 0 else ("fair", "fifo")


def percentile_ms(samples: list[float], q: float) -> float:
    return percentile(samples, q) * 1000
