"""1. noop jobs/s on one worker process: tidings with full persistence against raw ARQ.

Both sides get a batch enqueued in one go (tidings: one transaction, then the tokens in
one pipeline; raw ARQ: one pipeline) and are timed from the first job's start to the last
job's end: tidings from its `started` and `succeeded` event timestamps in Postgres, raw
ARQ from timestamps its noop function keeps.
"""

from __future__ import annotations

from bench import raw_arq
from bench.report import Row, Target
from bench.runner import Bench
from bench.stats import median

SCENARIO = "1 noop throughput"
# SAQ 0.26 runs ~1,100 noop jobs/s on this machine kind.
TARGET = Target(at_least=1_100, ratio_at_least=0.7)


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    async with bench.services.worker():
        await tidings_rate(bench, config.warmup_jobs)
        tidings = [await tidings_rate(bench, config.noop_jobs) for _ in range(config.reps)]
    async with bench.services.raw_worker():
        await raw_rate(bench, config.warmup_jobs)
        raw = [await raw_rate(bench, config.noop_jobs) for _ in range(config.reps)]
    note = (
        f"{config.noop_jobs} jobs, max_jobs {config.concurrency}, {config.poll_note()}, "
        f"median of {config.reps}"
    )
    return [
        Row(
            SCENARIO,
            "noop jobs/s, 1 worker",
            "/s",
            median(tidings),
            median(raw),
            TARGET,
            note,
            {"tidings": tidings, "raw_arq": raw},
        )
    ]


def within_s(jobs: int) -> float:
    return 30 + jobs / 50


async def tidings_rate(bench: Bench, jobs: int) -> float:
    ids = await bench.jobs.submit_many("noop", jobs)
    await bench.jobs.wait_finished(ids, within_s(jobs))
    span = await bench.jobs.span(ids)
    if span.succeeded != jobs:
        raise RuntimeError(f"{span.succeeded} of {jobs} noop jobs succeeded")
    return jobs / span.seconds


async def raw_rate(bench: Bench, jobs: int) -> float:
    queue = raw_arq.queue_name(bench.backing.namespace)
    batch = raw_arq.new_batch(bench.backing.namespace, jobs)
    await raw_arq.enqueue_batch(bench.raw_redis, queue, batch)
    first_start, last_end = await raw_arq.wait_batch(bench.raw_redis, batch, within_s(jobs))
    return jobs / (last_end - first_start)
