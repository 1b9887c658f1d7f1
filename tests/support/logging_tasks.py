"""Tasks that log the way task authors do (stdlib `logging`, structlog, from threads, a lot),
for tests/integration/test_task_logs.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import structlog

from tidings.worker import Job, PermanentError, on_startup, task

logger = logging.getLogger("tests.logging_tasks")
slog = structlog.get_logger("tests.logging_tasks")
IN_STEP = "logging_tasks.in_step"


@on_startup
async def make_lockstep(resources: dict[str, Any]) -> None:
    """Two jobs of `log_in_lockstep` take turns through this barrier."""
    resources[IN_STEP] = asyncio.Barrier(2)


@task(max_attempts=1)
async def log_both_ways(job: Job) -> str:
    """A line at each level through logging, one through structlog, one from a thread."""
    logger.debug("debug from logging")
    logger.info("info from logging, %d items", 3, extra={"source": "cache"})
    logger.warning("warning from logging")
    slog.info("structlog.line", rows=7)
    await asyncio.to_thread(logger.info, "from a worker thread")
    await job.log("from job.log")
    return "done"


@task(max_attempts=1)
async def chatty(job: Job, lines: int = 100) -> int:
    """Log `lines` lines, far more than a job should keep."""
    for number in range(lines):
        logger.info("line %d", number)
    return lines


@task(max_attempts=1)
async def log_in_lockstep(job: Job, steps: int = 3) -> None:
    """Log a line naming this job at each step, in turn with another job of this task."""
    barrier: asyncio.Barrier = job.resources[IN_STEP]
    for step in range(steps):
        logger.info("step %d of job %s", step, job.id)
        slog.info("step", step=step, of=str(job.id))
        await barrier.wait()


@task(max_attempts=1)
async def log_then_fail(job: Job) -> None:
    """Explain what went wrong in a log line, then fail."""
    try:
        raise KeyError("report-42")
    except KeyError:
        logger.exception("could not find the report")
    raise PermanentError("no report to export")
