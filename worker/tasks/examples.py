"""Example tasks: enough to try every part of the lifecycle from a shell."""

from __future__ import annotations

import asyncio

from tidings.worker import Job, PermanentError, task


@task(timeout=600)
async def sleep_steps(job: Job, steps: int = 10, delay_s: float = 0.5) -> dict[str, int]:
    """Sleep `steps` times for `delay_s` seconds, reporting progress after each step."""
    for step in range(1, steps + 1):
        await asyncio.sleep(delay_s)
        await job.progress(step, steps, f"step {step} of {steps}")
    return {"steps": steps}


@task
async def noop(job: Job) -> None:
    """Do nothing: the cost of a job itself."""


@task
async def fail(job: Job, message: str = "failed on purpose") -> None:
    """Fail at once with `message`: a permanent error, so it goes straight to failed."""
    raise PermanentError(message)


class FlakyError(ConnectionError):
    """A transient failure, as a flaky network would cause."""


@task(max_attempts=5)
async def flaky(job: Job, fail_times: int = 1) -> dict[str, int]:
    """Fail the first `fail_times` attempts, then succeed."""
    if job.attempt <= fail_times:
        raise FlakyError(f"attempt {job.attempt} of {fail_times} planned failures")
    return {"attempts": job.attempt}
