"""2. Submit -> started latency with an idle worker, tidings against raw ARQ.

Jobs are submitted one at a time with random gaps (so submissions do not fall in step
with a poll interval). tidings: the `started` event's `at` minus the job's `created_at`,
both Postgres clocks. Raw ARQ: the job's start minus the time taken just before
`enqueue_job`, both on this machine's clock.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from bench import raw_arq
from bench.report import Row, Target
from bench.runner import Bench
from bench.stats import median, percentile

SCENARIO = "2 submit -> started"
TARGET_P50 = Target(at_most=5.0)
TARGET_P99 = Target(at_most=25.0)
SETTLE_S = 1.0


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    rng = random.Random(6)
    async with bench.services.worker():
        await asyncio.sleep(SETTLE_S)
        tidings = [await tidings_latencies(bench, rng) for _ in range(config.reps)]
    async with bench.services.raw_worker():
        await asyncio.sleep(SETTLE_S)
        raw = [await raw_latencies(bench, rng) for _ in range(config.reps)]
    note = (
        f"{config.pickup_samples} jobs one at a time, median of {config.reps}; {config.poll_note()}"
    )
    rows = []
    for name, q, target in (("p50", 50, TARGET_P50), ("p99", 99, TARGET_P99)):
        t = [percentile(samples, q) * 1000 for samples in tidings]
        r = [percentile(samples, q) * 1000 for samples in raw]
        rows.append(
            Row(
                SCENARIO,
                f"latency {name}",
                "ms",
                median(t),
                median(r),
                target,
                note if name == "p50" else "",
                {"tidings": t, "raw_arq": r},
            )
        )
    return rows


async def pause(bench: Bench, rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(*bench.config.pickup_gap_s))


async def tidings_latencies(bench: Bench, rng: random.Random) -> list[float]:
    ids = []
    for _ in range(bench.config.pickup_samples):
        ids.append(await bench.jobs.submit("noop"))
        await pause(bench, rng)
    await bench.jobs.wait_finished(ids, within_s=30)
    return await bench.jobs.pickup_latencies(ids)


async def raw_latencies(bench: Bench, rng: random.Random) -> list[float]:
    namespace = bench.backing.namespace
    queue = raw_arq.queue_name(namespace)
    key = f"{queue}:pickup:{uuid.uuid4().hex[:8]}"
    samples = bench.config.pickup_samples
    for _ in range(samples):
        await raw_arq.enqueue_probe(bench.raw_redis, queue, namespace, key)
        await pause(bench, rng)
    return await raw_arq.wait_probes(bench.raw_redis, key, samples, within_s=30)
