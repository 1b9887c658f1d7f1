"""Tasks for the retention tests: one kept for less than its status's retention, one for more."""

from __future__ import annotations

from tidings.worker import Job, task

# The status retentions the tests prune with sit between these two.
BRIEF_RETAIN_S = 60.0
LASTING_RETAIN_S = 86_400.0


@task(retain_s=BRIEF_RETAIN_S)
async def brief(job: Job) -> None:
    """Succeed at once; kept for a minute after it ends."""


@task(retain_s=LASTING_RETAIN_S)
async def lasting(job: Job) -> None:
    """Succeed at once; kept for a day after it ends."""
