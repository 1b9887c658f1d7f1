"""Tasks that spawn children and wait for them, for the dependency and batch tests."""

from __future__ import annotations

import asyncio
from typing import Any

from tidings.worker import Job, PermanentError, task


@task
async def square(job: Job, x: int) -> int:
    """x²."""
    return x * x


@task
async def explode(job: Job, message: str = "exploded") -> None:
    """Fail at once, for good."""
    raise PermanentError(message)


@task(timeout=120)
async def dawdle(job: Job, seconds: float = 60.0) -> None:
    """Run until cancelled (or `seconds` pass)."""
    await asyncio.sleep(seconds)


@task(timeout=60)
async def sum_squares(job: Job, n: int, fail_child: bool = False) -> dict[str, Any]:
    """Spawn a `square` per number below `n` (and an `explode` if asked), wait for them all,
    and sum what they returned. Counts its own runs in the result."""
    for x in range(n):
        await job.spawn("square", {"x": x})
    if fail_child:
        await job.spawn("explode", {})
    results = await job.wait_children()
    return {"sum": sum(results.values()), "children": len(results)}


@task(timeout=60)
async def parent_of_dawdlers(job: Job, n: int = 2) -> None:
    """Spawn `n` children that run until cancelled, then wait for them."""
    for _ in range(n):
        await job.spawn("dawdle", {})
    await job.wait_children()


@task
async def collect(job: Job) -> dict[str, Any]:
    """What this job's dependencies returned, and how each ended."""
    deps = await job.dependencies()
    return {
        "results": await job.dependency_results(),
        "statuses": {dep.id: str(dep.status) for dep in deps},
    }
