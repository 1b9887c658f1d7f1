"""`python -m bench.scaling`: noop jobs/s and CPU per job against the number of worker processes.

For 1 to `--max-workers` worker processes on the bench's Postgres and Redis (embedded, or
`TIDINGS_BENCH_*_URL`), a batch of noop jobs is enqueued in one go (as scenario 1 does)
and timed from its first `started` to its last `succeeded` event, `--reps` times; the
CPU each engine spent on it is read around the batch: the workers' processes, the run's
Postgres backends (`/proc`), and Redis' own counters (`INFO cpu`). Writes
`bench/results/scaling.json` and the chart `docs/images/scaling.png`; docs/scaling.md
turns the numbers into the capacity model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT, BenchConfig
from bench.probes import cpu_use, raise_fd_limit
from bench.runner import Bench, open_bench, progress
from bench.services import Service
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings

RESULTS = REPO_ROOT / "bench" / "results" / "scaling.json"
CHART = REPO_ROOT / "docs" / "images" / "scaling.png"


@dataclass(frozen=True)
class Batch:
    """One timed batch: jobs/s, and CPU milliseconds per job of each engine."""

    workers: int
    rate: float
    worker_cpu_ms: float
    postgres_cpu_ms: float
    redis_cpu_ms: float


async def redis_cpu_s(bench: Bench) -> float:
    """CPU seconds the Redis server has used (its own count: every client of it included)."""
    info: dict[str, Any] = await bench.raw_redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def batch(bench: Bench, workers: list[Service], jobs: int) -> Batch:
    ids = await bench.jobs.submit_many("noop", jobs)
    own = await bench.jobs.own_backends()
    before = [cpu_use(worker.pid, bench.backing.database, own) for worker in workers]
    redis_before = await redis_cpu_s(bench)
    await bench.jobs.wait_finished(ids, 60 + jobs / 50)
    after = [cpu_use(worker.pid, bench.backing.database, own) for worker in workers]
    redis_used = await redis_cpu_s(bench) - redis_before
    span = await bench.jobs.span(ids)
    if span.succeeded != jobs:
        raise RuntimeError(f"{span.succeeded} of {jobs} noop jobs succeeded")
    worker_s = sum(b.process_s - a.process_s for a, b in zip(before, after, strict=True))
    postgres_s = after[0].postgres_s - before[0].postgres_s  # the same backends for each
    return Batch(
        len(workers),
        jobs / span.seconds,
        worker_s * 1000 / jobs,
        postgres_s * 1000 / jobs,
        redis_used * 1000 / jobs,
    )


async def sweep(max_workers: int, jobs: int, reps: int, config: BenchConfig) -> list[Batch]:
    """Every batch of every worker count, more workers added as the sweep goes."""
    measured: list[Batch] = []
    async with open_bench(config, os.environ) as bench, AsyncExitStack() as stack:
        workers: list[Service] = []
        for count in range(1, max_workers + 1):
            workers.append(await stack.enter_async_context(bench.services.worker()))
            await batch(bench, workers, config.warmup_jobs)
            for rep in range(reps):
                done = await batch(bench, workers, jobs)
                progress(f"{count} worker(s), rep {rep + 1}: {done.rate:,.0f} jobs/s")
                measured.append(done)
    return measured


def medians(measured: list[Batch]) -> list[dict[str, float]]:
    """One row per worker count: the median of each measure over its repetitions."""
    rows = []
    for count in sorted({b.workers for b in measured}):
        of = [b for b in measured if b.workers == count]
        rows.append(
            {
                "workers": count,
                "jobs_per_s": statistics.median(b.rate for b in of),
                "worker_cpu_ms": statistics.median(b.worker_cpu_ms for b in of),
                "postgres_cpu_ms": statistics.median(b.postgres_cpu_ms for b in of),
                "redis_cpu_ms": statistics.median(b.redis_cpu_ms for b in of),
            }
        )
    return rows


def chart(measured: list[Batch], path: Path) -> None:
    """Jobs/s against worker processes (each repetition a dot, the median a line), and
    beside it the CPU each engine spent per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = medians(measured)
    counts = [r["workers"] for r in rows]
    figure, (rate, cpu) = plt.subplots(1, 2, figsize=(11, 4))
    rate.scatter([b.workers for b in measured], [b.rate for b in measured], s=14, alpha=0.5)
    rate.plot(counts, [r["jobs_per_s"] for r in rows], marker="o")
    rate.set_ylabel("noop jobs/s, full persistence")
    rate.set_title("throughput (measured)")
    for key, label in (
        ("postgres_cpu_ms", "Postgres"),
        ("worker_cpu_ms", "workers (all)"),
        ("redis_cpu_ms", "Redis"),
    ):
        cpu.plot(counts, [r[key] for r in rows], marker="o", label=label)
    cpu.set_ylabel("CPU ms per job (median)")
    cpu.set_title("CPU per job, by engine (measured)")
    cpu.legend()
    for axis in (rate, cpu):
        axis.set_xlabel("worker processes (2 cores, shared with Postgres and Redis)")
        axis.set_xticks(counts)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=3_000, help="noop jobs per batch")
    parser.add_argument("--reps", type=int, default=3, help="batches per worker count")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--redraw", type=Path, help="chart a saved run again, run nothing")
    options = parser.parse_args(argv)
    if options.redraw is not None:
        saved = json.loads(options.redraw.read_text())
        measured = [Batch(**batch) for batch in saved["batches"]]
    else:
        configure_logging(Settings(log_format="console", log_level="warning"))
        raise_fd_limit()
        config = BenchConfig()
        measured = asyncio.run(sweep(options.max_workers, options.jobs, options.reps, config))
        options.output.parent.mkdir(parents=True, exist_ok=True)
        document = {"batches": [asdict(b) for b in measured], "medians": medians(measured)}
        options.output.write_text(json.dumps(document, indent=2) + "\n")
    chart(measured, options.chart)
    for row in medians(measured):
        print(
            f"{row['workers']} worker(s): {row['jobs_per_s']:,.0f} jobs/s; CPU per job: "
            f"workers {row['worker_cpu_ms']:.3f} ms, Postgres {row['postgres_cpu_ms']:.3f} ms, "
            f"Redis {row['redis_cpu_ms']:.3f} ms"
        )


if __name__ == "__main__":
    main()
