"""`python -m bench.soak [--minutes N]`: a steady mixed load for a long time, and whether
anything grows.

One server and two workers (on an embedded Postgres and Redis unless
`TIDINGS_BENCH_*_URL` are set) run with retention set to minutes, under a steady load:
noops, progress-heavy jobs, jobs that fail and jobs that fail then succeed on retry, all
submitted over HTTP, and SSE streams opening and closing. Every sample period it records
jobs finished per second, p99 submit -> started, the RSS and open file descriptors of each
process, Postgres table and index sizes, and Redis memory.

It passes when nothing is lost (every job submitted ends, or was pruned after it ended;
every stream read to its end is gapless) and, after the warm-up, no series trends upward:
a least-squares line over the samples may not rise by more than `--tolerance` of the
series' mean over the measured span. The warm-up is two retentions plus two samples:
tables grow for one retention before the first job is pruned, and for about one more
until the space of pruned rows, once vacuumed, is what new rows fill. It writes
`bench/results/soak.json` and a chart, `docs/images/soak.png`; `--judge FILE` judges and
charts a saved run again without running one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from bench.config import REPO_ROOT, RESULTS_DIR, BenchConfig
from bench.probes import raise_fd_limit
from bench.runner import open_bench
from bench.services import RunningServer, Service
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings

CHART = REPO_ROOT / "docs" / "images" / "soak.png"
TABLES = ("jobs", "job_events", "job_event_runs")
TERMINAL = {"succeeded", "failed", "cancelled"}
# What the load submits every second, by task: (task, args, jobs per second).
LOAD: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("noop", {}, 40.0),
    ("progress_loop", {"count": 2_000}, 1.0),
    ("fail", {}, 2.0),
    ("flaky", {"fail_times": 1}, 2.0),
)
STREAMS_PER_S = 2.0
# Shorter runs are smoke runs: nothing may be lost, but no trend is judged.
JUDGED_FROM_MIN = 10.0


@dataclass
class Sample:
    """One sample period's readings."""

    minute: float
    jobs_per_s: float
    started_p99_ms: float | None
    rss_mb: dict[str, float]
    open_fds: dict[str, int]
    table_mb: dict[str, float]
    redis_mb: float


@dataclass
class Ledger:
    """What the load did, to check that nothing was lost."""

    submitted: list[uuid.UUID] = field(default_factory=list)
    refused: int = 0
    streams_read: int = 0
    streams_gapped: int = 0


def read_proc(pid: int) -> tuple[float, int]:
    """RSS (MB) and open file descriptors of process `pid`."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


class Load:
    """Submits the mixed load and opens streams, at steady rates, until stopped."""

    def __init__(self, client: httpx.AsyncClient, ledger: Ledger, rng: random.Random) -> None:
        self._client = client
        self._ledger = ledger
        self._rng = rng
        self._streams: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await asyncio.gather(
            *(self._submit_at(task, args, rate) for task, args, rate in LOAD), self._open_streams()
        )

    async def _submit_at(self, task: str, args: dict[str, Any], per_s: float) -> None:
        while True:
            response = await self._client.post("/jobs", json={"task": task, "args": args})
            if response.status_code == 202:
                self._ledger.submitted.append(uuid.UUID(response.json()["id"]))
            else:
                self._ledger.refused += 1
            await asyncio.sleep(self._rng.expovariate(per_s))

    async def _open_streams(self) -> None:
        while True:
            await asyncio.sleep(self._rng.expovariate(STREAMS_PER_S))
            if self._ledger.submitted:
                job_id = self._rng.choice(self._ledger.submitted[-200:])
                task = asyncio.create_task(self._read_stream(job_id))
                self._streams.add(task)
                task.add_done_callback(self._streams.discard)

    async def _read_stream(self, job_id: uuid.UUID) -> None:
        """Follow a job for up to 5 s; a stream read to its end must be gapless."""
        seqs: list[int] = []
        try:
            async with asyncio.timeout(5):
                async with aconnect_sse(self._client, "GET", f"/jobs/{job_id}/events") as source:
                    async for sse in source.aiter_sse():
                        if sse.id:
                            seqs.append(int(sse.id))
        except (TimeoutError, httpx.HTTPError):
            return  # closed early, as clients do: only the streams read to the end count
        self._ledger.streams_read += 1
        if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            self._ledger.streams_gapped += 1

    async def stop(self) -> None:
        for task in list(self._streams):
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)


@dataclass
class Readings:
    """Reads the processes, Postgres and Redis for each sample."""

    processes: dict[str, int]
    bench: Any

    async def sample(self, minute: float, period_s: float) -> Sample:
        pool = self.bench.jobs.pool
        finished = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE finished_at > now() - make_interval(secs => $1)",
            period_s,
        )
        started = await pool.fetchval(
            "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY"
            " extract(epoch FROM started_at - created_at)) FROM jobs"
            " WHERE started_at > now() - make_interval(secs => $1) AND attempt = 1",
            period_s,
        )
        tables = {}
        for table in TABLES:
            size = await pool.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            tables[table] = size / 2**20
        memory = await self.bench.raw_redis.info("memory")
        procs = {name: read_proc(pid) for name, pid in self.processes.items()}
        return Sample(
            minute=minute,
            jobs_per_s=finished / period_s,
            started_p99_ms=None if started is None else started * 1000,
            rss_mb={name: rss for name, (rss, _) in procs.items()},
            open_fds={name: fds for name, (_, fds) in procs.items()},
            table_mb=tables,
            redis_mb=memory["used_memory"] / 2**20,
        )


def series(samples: list[Sample]) -> dict[str, list[float]]:
    """Every recorded quantity, by name, one value per sample."""
    named: dict[str, list[float]] = {"jobs/s": [s.jobs_per_s for s in samples]}
    for name in samples[0].rss_mb:
        named[f"{name} RSS MB"] = [s.rss_mb[name] for s in samples]
        named[f"{name} fds"] = [float(s.open_fds[name]) for s in samples]
    for table in TABLES:
        named[f"{table} MB"] = [s.table_mb[table] for s in samples]
    named["redis MB"] = [s.redis_mb for s in samples]
    named["p99 submit->started ms"] = [s.started_p99_ms or 0.0 for s in samples]
    return named


def rise(values: list[float], minutes: list[float]) -> float:
    """How much a least-squares line through the values rises over the span, as a share
    of their mean (0 when flat or falling)."""
    mean = statistics.fmean(values)
    if len(values) < 3 or mean == 0:
        return 0.0
    slope = statistics.linear_regression(minutes, values).slope
    return max(0.0, slope * (minutes[-1] - minutes[0]) / mean)


def judge(samples: list[Sample], warmup_min: float, tolerance: float) -> dict[str, Any]:
    """Each growing series after the warm-up (`jobs/s` and latency are not growth). A run
    shorter than `JUDGED_FROM_MIN` is a smoke run: it shows the rises, judges none."""
    measured = [s for s in samples if s.minute >= warmup_min]
    if len(measured) < 3 or samples[-1].minute < JUDGED_FROM_MIN:
        return {"judged": False, "reason": "a smoke run: trends are judged from 10 minutes"}
    minutes = [s.minute for s in measured]
    rises = {
        name: round(rise(values, minutes), 3)
        for name, values in series(measured).items()
        if not name.startswith(("jobs/s", "p99"))
    }
    growing = {name: value for name, value in rises.items() if value > tolerance}
    return {"judged": True, "rises": rises, "growing": growing, "flat": not growing}


def chart(samples: list[Sample], warmup_min: float, path: Path) -> None:
    """One small plot per series, the warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = series(samples)
    minutes = [s.minute for s in samples]
    columns = 3
    rows = -(-len(named) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.4 * rows), squeeze=False)
    for axis, (name, values) in zip(axes.flat, named.items(), strict=False):
        axis.plot(minutes, values, marker=".")
        axis.axvspan(0, warmup_min, color="0.9")
        axis.set_title(name, fontsize=9)
        axis.set_ylim(bottom=0)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(named) :]:
        axis.axis("off")
    figure.supxlabel("minutes (shaded: warm-up)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


@asynccontextmanager
async def running(bench: Any) -> AsyncIterator[tuple[RunningServer, list[Service]]]:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(bench.services.server())
        workers = [await stack.enter_async_context(bench.services.worker()) for _ in range(2)]
        yield server, workers


async def soak(options: argparse.Namespace) -> dict[str, Any]:
    retain_s = options.retain_minutes * 60
    config = replace(
        BenchConfig(),
        settings_overrides=(
            ("retain_succeeded_s", retain_s),
            ("retain_failed_s", retain_s),
            ("retain_cancelled_s", retain_s),
            ("prune_period_s", min(30.0, retain_s / 4)),
        ),
    )
    period_s = options.sample_s
    warmup_min = warmup_minutes(options.retain_minutes, period_s)
    ledger = Ledger()
    async with open_bench(config, dict(os.environ)) as bench, running(bench) as (server, workers):
        processes = {"server": server.service.pid}
        processes.update({f"worker {n}": worker.pid for n, worker in enumerate(workers, 1)})
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            load = Load(client, ledger, random.Random(14))
            loading = asyncio.create_task(load.run())
            try:
                samples = await sample_for(Readings(processes, bench), options)
            finally:
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
                await load.stop()
        lost = await unfinished(bench, ledger.submitted)
    verdict = judge(samples, warmup_min, options.tolerance)
    result = {
        "minutes": options.minutes,
        "sample_s": period_s,
        "retain_minutes": options.retain_minutes,
        "warmup_minutes": warmup_min,
        "submitted": len(ledger.submitted),
        "refused": ledger.refused,
        "lost": lost,
        "streams_read": ledger.streams_read,
        "streams_gapped": ledger.streams_gapped,
        "verdict": verdict,
        "samples": [sample.__dict__ for sample in samples],
    }
    result["passed"] = (
        not lost and not ledger.refused and not ledger.streams_gapped and verdict.get("flat", True)
    )
    chart(samples, warmup_min, options.chart)
    return result


def warmup_minutes(retain_minutes: float, sample_s: float) -> float:
    """Two retentions and two samples (see the module docstring)."""
    return 2 * retain_minutes + 2 * sample_s / 60


def judged_again(path: Path, options: argparse.Namespace) -> dict[str, Any]:
    """A saved run's verdict and chart, made again from its samples."""
    result: dict[str, Any] = json.loads(path.read_text())
    samples = [Sample(**sample) for sample in result["samples"]]
    warmup_min = warmup_minutes(result["retain_minutes"], result["sample_s"])
    result["warmup_minutes"] = warmup_min
    result["verdict"] = judge(samples, warmup_min, options.tolerance)
    lost = result["lost"] or result["refused"] or result["streams_gapped"]
    result["passed"] = not lost and result["verdict"].get("flat", True)
    chart(samples, warmup_min, options.chart)
    return result


async def sample_for(readings: Readings, options: argparse.Namespace) -> list[Sample]:
    """A sample every `--sample-s` for `--minutes`."""
    samples: list[Sample] = []
    started = time.monotonic()
    duration_s = options.minutes * 60
    while (elapsed := time.monotonic() - started) < duration_s:
        await asyncio.sleep(min(options.sample_s, duration_s - elapsed))
        minute = (time.monotonic() - started) / 60
        samples.append(await readings.sample(minute, options.sample_s))
        print(f"[soak] {json.dumps(samples[-1].__dict__)}", file=sys.stderr, flush=True)
    return samples


async def unfinished(bench: Any, submitted: list[uuid.UUID], within_s: float = 120.0) -> int:
    """How many submitted jobs never ended: waits for the last ones, then counts the ids
    still there and not finished (a pruned job had ended: only finished jobs are pruned)."""
    deadline = time.monotonic() + within_s
    while True:
        waiting = await bench.jobs.pool.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status <> ALL($2)",
            submitted,
            list(TERMINAL),
        )
        if not waiting or time.monotonic() > deadline:
            return int(waiting)
        await asyncio.sleep(1.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds per sample")
    parser.add_argument(
        "--retain-minutes", type=float, default=5.0, help="retention of finished jobs"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.10, help="largest rise allowed, as a share"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "soak.json")
    parser.add_argument("--judge", type=Path, help="judge a saved run again; run nothing")
    parser.add_argument("--chart", type=Path, default=CHART)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    configure_logging(Settings(log_format="console", log_level="warning"))
    if options.judge:
        result = judged_again(options.judge, options)
    else:
        raise_fd_limit()
        result = asyncio.run(soak(options))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2, default=str))
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2, default=str))
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
