"""Tasks that fail, time out or wait to be cancelled, for the lifecycle failure tests.

Backoffs are tiny so retries happen at once; the one task with a long backoff exists to
be cancelled between its attempts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tidings.worker import Job, PermanentError, RetryPolicy, on_startup, task

TINY_BACKOFF = RetryPolicy(base_s=0.01, jitter=False)
# Long enough to cancel the job while it waits, short enough to wait out in a test.
SLOW_BACKOFF = RetryPolicy(base_s=1.0, jitter=False)
HOLD_TIMEOUT_S = 60.0
CLEANED_UP = "cleaned_up"


class QuotaExceeded(RuntimeError):
    """A task-specific error that `raise_error` lists in `no_retry`."""


class TransientError(ConnectionError):
    """A failure another attempt may not meet."""


ERRORS: dict[str, type[Exception]] = {
    "permanent": PermanentError,
    "value": ValueError,
    "type": TypeError,
    "file": FileNotFoundError,
    "quota": QuotaExceeded,
    "runtime": RuntimeError,
    "connection": TransientError,
}


@on_startup
async def track_cleanups(resources: dict[str, Any]) -> None:
    """Ids of jobs whose cleanup (`finally`) ran, in this worker."""
    resources[CLEANED_UP] = []


@task(max_attempts=5, retry=TINY_BACKOFF)
async def quick_flaky(job: Job, fail_times: int = 1) -> dict[str, int]:
    """Fail the first `fail_times` attempts with a transient error, then succeed."""
    if job.attempt <= fail_times:
        raise TransientError(f"attempt {job.attempt} of {fail_times} planned failures")
    return {"attempts": job.attempt}


@task(max_attempts=1, retry=TINY_BACKOFF)
async def once_flaky(job: Job, fail_times: int = 1) -> dict[str, int]:
    """Like `quick_flaky`, but with one attempt unless the submission asks for more."""
    if job.attempt <= fail_times:
        raise TransientError(f"attempt {job.attempt} of {fail_times} planned failures")
    return {"attempts": job.attempt}


@task(max_attempts=3, retry=TINY_BACKOFF, no_retry=(QuotaExceeded,))
async def raise_error(job: Job, kind: str, message: str = "failed on purpose") -> None:
    """Raise the error named by `kind` on every attempt."""
    raise ERRORS[kind](f"{message} (attempt {job.attempt})")


@task(max_attempts=3, retry=SLOW_BACKOFF)
async def slow_retry(job: Job) -> None:
    """Fail every attempt with a transient error; the next attempt is a second away."""
    raise TransientError(f"attempt {job.attempt} failed")


@task(timeout=0.2, max_attempts=2, retry=TINY_BACKOFF)
async def slow_first(job: Job, sleep_s: float = 30.0) -> dict[str, Any]:
    """Sleep `sleep_s` on the first attempt only; report the deadline the task saw."""
    if job.attempt == 1:
        await asyncio.sleep(sleep_s)
    return {
        "attempt": job.attempt,
        "timeout_s": job.timeout_s,
        "time_left": job.time_left(),
        "deadline": job.deadline.isoformat(),
        "now": datetime.now(UTC).isoformat(),
    }


@task(timeout=HOLD_TIMEOUT_S, max_attempts=1)
async def hold(job: Job) -> None:
    """Report progress, then wait until cancelled; the `finally` records that cleanup ran."""
    try:
        await job.progress(1, 2, "holding")
        await asyncio.sleep(HOLD_TIMEOUT_S)
    finally:
        job.resources[CLEANED_UP].append(str(job.id))


@task(timeout=HOLD_TIMEOUT_S, max_attempts=3, retry=TINY_BACKOFF)
async def hold_failing_cleanup(job: Job) -> None:
    """Report progress, then wait until cancelled; the cleanup in `finally` fails."""
    try:
        await job.progress(1, 2, "holding")
        await asyncio.sleep(HOLD_TIMEOUT_S)
    finally:
        raise TransientError(f"cleanup of attempt {job.attempt} failed")


@task
async def cleaned_up(job: Job) -> list[str]:
    """The ids of jobs whose `finally` ran in this worker."""
    return list(job.resources[CLEANED_UP])
