"""Tasks and hooks for the scheduling tests: gates, queues, limits, cron, cache, progress.

The workers of those tests run in the test's own event loop, so the test observes and
steers these tasks through two plain objects: `gates`, which a task waits on until the
test opens it, and `lifecycle`, which the worker hooks write to.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from tidings.worker import Job, on_shutdown, on_startup, task

# No worker consumes this queue in the tests: a task declared here only runs when a test
# starts a worker for it.
OTHER_QUEUE = "other"
# The queue of the concurrency-limited tasks, consumed only by the tests' two workers.
LIMITED_QUEUE = "limited"
# A yearly schedule, so a worker following the real clock never fires it during a test;
# the tests drive a CronScheduler with a fake clock instead.
RARE_CRON = "0 0 1 1 *"


class Gates:
    """Named gates that tasks wait on until the test opens them."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    async def wait(self, name: str) -> None:
        await self._event(name).wait()

    def open(self, name: str) -> None:
        self._event(name).set()


@dataclass
class Greeter:
    """What the startup hook puts in a worker's resources."""

    session: str
    closed: bool = False

    def greet(self, name: str) -> str:
        return f"hello, {name}"


@dataclass
class Lifecycle:
    """The resources of every worker whose startup and shutdown hooks have run."""

    started: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[dict[str, Any]] = field(default_factory=list)


gates = Gates()
lifecycle = Lifecycle()
# (job id, attempt) of every attempt of `held_open` that was cancelled while it waited.
interrupted: list[tuple[str, int]] = []


@on_startup
async def open_greeter(resources: dict[str, Any]) -> None:
    resources["greeter"] = Greeter(session=uuid.uuid4().hex)
    lifecycle.started.append(resources)


@on_shutdown
async def close_greeter(resources: dict[str, Any]) -> None:
    resources["greeter"].closed = True
    lifecycle.stopped.append(resources)


@task(timeout=60, max_attempts=1)
async def gate(job: Job, name: str) -> dict[str, str]:
    """Hold a worker slot until the test opens the gate `name`."""
    await gates.wait(name)
    return {"gate": name}


@task(queue=OTHER_QUEUE)
async def elsewhere(job: Job) -> dict[str, str]:
    """Report the queue the job ran from."""
    return {"queue": job.queue}


async def _hold(job: Job, gate: str | None, hold_s: float) -> None:
    await job.log("start")
    if gate is not None:
        await gates.wait(gate)
    await asyncio.sleep(hold_s)
    await job.log("end")


@task(queue=LIMITED_QUEUE, max_concurrency=1, timeout=60, max_attempts=1)
async def one_at_a_time(job: Job, gate: str | None = None, hold_s: float = 0.0) -> None:
    """Log start, wait for the gate, hold, log end; at most one runs in the cluster."""
    await _hold(job, gate, hold_s)


@task(queue=LIMITED_QUEUE, max_concurrency=2, timeout=60, max_attempts=1)
async def two_at_a_time(job: Job, gate: str | None = None, hold_s: float = 0.0) -> None:
    """Log start, wait for the gate, hold, log end; at most two run in the cluster."""
    await _hold(job, gate, hold_s)


@task(cron=RARE_CRON)
async def yearly(job: Job) -> dict[str, str]:
    """A cron task; the tests fire its slots with a fake clock."""
    return {"ran": job.task}


@task(cache_ttl=3600)
async def add(job: Job, a: int, b: int) -> dict[str, int]:
    """A pure function of its args, so its result may be served from the cache."""
    return {"sum": a + b}


@task
async def greet(job: Job, name: str) -> dict[str, str]:
    """Greet with what the worker's startup hook opened."""
    greeter: Greeter = job.resources["greeter"]
    return {"greeting": greeter.greet(name), "session": greeter.session}


@task(timeout=60, max_attempts=1)
async def report_progress(job: Job, gate: str | None = None) -> dict[str, bool]:
    """Log and report progress with extra data, optionally pausing at a gate halfway."""
    await job.log("fetched page", page=1, url="https://example.test/1")
    await job.progress(1, 4, "downloading", phase="download", bytes=1024)
    await job.log("plain note")
    if gate is not None:
        await gates.wait(gate)
    await job.progress(4, 4, "done", phase="finish")
    return {"ok": True}


@task(timeout=60, max_attempts=1)
async def measured(job: Job, hold_s: float = 0.0) -> None:
    """Take `hold_s` seconds: a run duration for ETA estimates to be made from."""
    await asyncio.sleep(hold_s)


@task(timeout=60, max_attempts=3)
async def held_open(job: Job, name: str) -> None:
    """Wait for the gate `name`; an attempt cancelled meanwhile is noted in `interrupted`."""
    try:
        await gates.wait(name)
    except asyncio.CancelledError:
        interrupted.append((str(job.id), job.attempt))
        raise
