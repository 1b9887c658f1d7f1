"""Tasks the bench runs in a tidings worker (loaded with TIDINGS_TASKS=...,bench.tasks)."""

from __future__ import annotations

import asyncio
import time

from tidings.worker import Job, task


@task(timeout=600, max_attempts=1)
async def progress_loop(job: Job, count: int, report: bool = True) -> dict[str, float]:
    """Report progress `count` times in a tight loop (or run the same loop without reporting).

    Each step yields to the event loop once (`sleep(0)`), as any real async work does; a
    step that never yields would make the no-report loop cost nothing, and the ratio of
    the two loops meaningless.
    """
    started = time.perf_counter()
    for step in range(1, count + 1):
        if report:
            await job.progress(step, count)
        await asyncio.sleep(0)
    return {"loop_s": time.perf_counter() - started}


@task(timeout=600, max_attempts=1)
async def cpu_steps(job: Job, count: int, step_us: float = 100.0, report: bool = True) -> None:
    """`count` steps of `step_us` of real CPU work each, reporting after every step (or not):
    a stand-in for producing an LLM token. Each step then yields once, as a task awaiting
    its next token would."""
    step_s = step_us / 1e6
    for step in range(1, count + 1):
        until = time.perf_counter() + step_s
        spins = 0
        while time.perf_counter() < until:
            spins += 1
        if report:
            await job.progress(step, count)
        await asyncio.sleep(0)


@task(timeout=600, max_attempts=1)
async def progress_paced(
    job: Job, count: int = 200, interval_s: float = 0.01, warmup_s: float = 0.5
) -> None:
    """Report progress `count` times, `interval_s` apart, each stamped with its send time.

    It waits `warmup_s` first, so a client that subscribes right after submitting sees
    every progress event live rather than from the replay.
    """
    await asyncio.sleep(warmup_s)
    for step in range(1, count + 1):
        await job.progress(step, count, sent_at=time.time())
        await asyncio.sleep(interval_s)


@task(timeout=600, max_attempts=1)
async def hold(job: Job, hold_s: float = 300.0) -> None:
    """Report once, then wait until cancelled (or `hold_s` passes)."""
    await job.progress(0, 1, "holding")
    await asyncio.sleep(hold_s)
