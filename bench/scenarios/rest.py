"""6. REST submit: jobs/s one server process accepts over concurrent keep-alive connections.

Every request is a full `POST /jobs` (validation, row and event, token, publish). The jobs
go to a queue no worker consumes, so nothing else competes for the CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from bench.http import Connection
from bench.report import Row, Target
from bench.runner import Bench
from bench.services import RunningServer
from bench.stats import median

SCENARIO = "6 REST submit"
TARGET = Target(at_least=2_000)
QUEUE = "bench-rest"
BODY = {"task": "noop", "queue": QUEUE}
WARMUP_JOBS = 200


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    rates: list[float] = []
    server_ms: list[float] = []
    postgres_ms: list[float] = []
    async with bench.services.server() as server:
        await submit_rate(server, WARMUP_JOBS, config.rest_connections)
        for _ in range(config.reps):
            before = await bench.cpu(server.service.pid)
            rates.append(await submit_rate(server, config.rest_jobs, config.rest_connections))
            used = await bench.cpu(server.service.pid) - before
            server_ms.append(used.process_s * 1000 / config.rest_jobs)
            postgres_ms.append(used.postgres_s * 1000 / config.rest_jobs)
    note = (
        f"{config.rest_jobs:,} POST /jobs over {config.rest_connections} connections, "
        f"median of {config.reps}; CPU per job: server {median(server_ms):.2f} ms "
        f"+ Postgres {median(postgres_ms):.2f} ms"
    )
    return [
        Row(
            SCENARIO,
            "jobs/s, 1 server process",
            "/s",
            median(rates),
            target=TARGET,
            note=note,
            reps={"tidings": rates, "server_cpu_ms": server_ms, "postgres_cpu_ms": postgres_ms},
        )
    ]


async def submit_rate(server: RunningServer, jobs: int, connections: int) -> float:
    """Submit `jobs` jobs over `connections` connections; jobs per second of wall time."""
    remaining = jobs
    statuses: Counter[int] = Counter()

    async def client() -> None:
        nonlocal remaining
        connection = Connection(server.host, server.port)
        try:
            while remaining > 0:
                remaining -= 1
                response = await connection.request("POST", "/jobs", BODY)
                statuses[response.status] += 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if statuses != Counter({202: jobs}):
        raise RuntimeError(f"unexpected responses: {dict(statuses)}")
    return jobs / elapsed
