"""1. noop jobs/s on one worker process: tidings with full persistence against raw ARQ.

Both sides get a batch enqueued in one go (tidings: one transaction, then the tokens in
one pipeline; raw ARQ: one pipeline) and are timed from the first job's start to the last
job's end: tidings from its `started` and `succeeded` event timestamps in Postgres, raw
ARQ from timestamps its noop function keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import raw_arq
from bench.report import Row, Target
from bench.runner import Bench
from bench.services import Service
from bench.stats import median

SCENARIO = "1 noop throughput"
# SAQ 0.26 runs ~1,100 noop jobs/s on this machine kind.
TARGET = Target(at_least=1_100, ratio_at_least=0.7)


@dataclass(frozen=True)
class Measured:
    """One batch: jobs per second, and CPU milliseconds per job spent by each process."""

    rate: float
    worker_cpu_ms: float
    postgres_cpu_ms: float


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    async with bench.services.worker() as worker:
        await tidings_batch(bench, worker, config.warmup_jobs)
        tidings = [await tidings_batch(bench, worker, config.noop_jobs) for _ in range(config.reps)]
    async with bench.services.raw_worker() as raw_worker:
        await raw_batch(bench, raw_worker, config.warmup_jobs)
        raw = [await raw_batch(bench, raw_worker, config.noop_jobs) for _ in range(config.reps)]
    cpu = (
        f"CPU per job: tidings worker {median([m.worker_cpu_ms for m in tidings]):.2f} ms "
        f"+ Postgres {median([m.postgres_cpu_ms for m in tidings]):.2f} ms, "
        f"raw ARQ worker {median([m.worker_cpu_ms for m in raw]):.2f} ms"
    )
    note = (
        f"{config.noop_jobs} jobs, max_jobs {config.concurrency}, {config.poll_note()}, "
        f"median of {config.reps}; {cpu}"
    )
    return [
        Row(
            SCENARIO,
            "noop jobs/s, 1 worker",
            "/s",
            median([m.rate for m in tidings]),
            median([m.rate for m in raw]),
            TARGET,
            note,
            {
                "tidings": [m.rate for m in tidings],
                "raw_arq": [m.rate for m in raw],
                "tidings_worker_cpu_ms": [m.worker_cpu_ms for m in tidings],
                "tidings_postgres_cpu_ms": [m.postgres_cpu_ms for m in tidings],
                "raw_worker_cpu_ms": [m.worker_cpu_ms for m in raw],
            },
        )
    ]


def within_s(jobs: int) -> float:
    return 30 + jobs / 50


async def tidings_batch(bench: Bench, worker: Service, jobs: int) -> Measured:
    ids = await bench.jobs.submit_many("noop", jobs)
    before = await bench.cpu(worker.pid)
    await bench.jobs.wait_finished(ids, within_s(jobs))
    used = await bench.cpu(worker.pid) - before
    span = await bench.jobs.span(ids)
    if span.succeeded != jobs:
        raise RuntimeError(f"{span.succeeded} of {jobs} noop jobs succeeded")
    return Measured(
        jobs / span.seconds, used.process_s * 1000 / jobs, used.postgres_s * 1000 / jobs
    )


async def raw_batch(bench: Bench, worker: Service, jobs: int) -> Measured:
    queue = raw_arq.queue_name(bench.backing.namespace)
    batch = raw_arq.new_batch(bench.backing.namespace, jobs)
    await raw_arq.enqueue_batch(bench.raw_redis, queue, batch)
    before = await bench.cpu(worker.pid)
    first_start, last_end = await raw_arq.wait_batch(bench.raw_redis, batch, within_s(jobs))
    used = await bench.cpu(worker.pid) - before
    return Measured(jobs / (last_end - first_start), used.process_s * 1000 / jobs, 0.0)
