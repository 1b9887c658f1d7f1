"""One bench run: the connections and processes scenarios share, and running them in turn."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from arq.connections import ArqRedis

from bench import raw_arq
from bench.backing import Backing, open_backing, with_application_name
from bench.config import BenchConfig
from bench.jobs import APPLICATION_NAME, JobClient
from bench.probes import CpuUse, RedisProbe, cpu_use
from bench.report import Row, failed_row
from bench.services import Services
from tidings.core import queue
from tidings.core.db.pool import create_pool
from tidings.core.submission import Submitter


@dataclass(frozen=True)
class Bench:
    """What every scenario gets: settings, processes, and the bench's own clients."""

    config: BenchConfig
    backing: Backing
    services: Services
    jobs: JobClient
    raw_redis: ArqRedis
    probe: RedisProbe

    async def cpu(self, pid: int) -> CpuUse:
        """CPU used so far by process `pid` and by the run's Postgres, minus the bench's."""
        return cpu_use(pid, self.backing.database, await self.jobs.own_backends())


Scenario = Callable[[Bench], Awaitable[list[Row]]]


@asynccontextmanager
async def open_bench(config: BenchConfig, environ: Mapping[str, str]) -> AsyncIterator[Bench]:
    """Backing servers, the bench's connections, and a database that knows the tasks."""
    async with AsyncExitStack() as stack:
        backing = await stack.enter_async_context(open_backing(config, environ))
        pool = await create_pool(
            with_application_name(backing.database_url, APPLICATION_NAME), max_size=10
        )
        stack.push_async_callback(pool.close)
        redis = await queue.connect(backing.redis_url)
        stack.push_async_callback(redis.aclose)
        raw_redis = await raw_arq.connect(backing.redis_url)
        stack.push_async_callback(raw_redis.aclose)
        probe = RedisProbe(backing.redis_url, private=backing.private_redis)
        stack.push_async_callback(probe.close)
        services = Services(backing, config, config.results_dir / "logs")
        # A worker registers the tasks (the server validates submissions against them).
        async with services.worker():
            pass
        names = queue.Names(backing.namespace)
        jobs = JobClient(pool, redis, names, Submitter(pool, redis, names))
        yield Bench(config, backing, services, jobs, raw_redis, probe)


async def run_scenarios(bench: Bench, scenarios: Sequence[tuple[str, Scenario]]) -> list[Row]:
    """Run each scenario; one that fails leaves an error row and the rest still run."""
    rows: list[Row] = []
    for name, scenario in scenarios:
        started = time.monotonic()
        progress(f"{name} ...")
        try:
            rows.extend(await scenario(bench))
        except Exception as exc:
            rows.append(failed_row(name, exc))
            progress(f"{name} failed: {exc!r}")
        progress(f"{name} done in {time.monotonic() - started:.1f}s")
    return rows


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
