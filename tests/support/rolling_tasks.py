"""A task module that only the "new" workers of a rolling deploy have."""

from __future__ import annotations

from tidings.worker import Job, task


@task
async def rolled_out(job: Job) -> dict[str, str]:
    """A task added by the deploy under way."""
    return {"ran_on": "a new worker"}
