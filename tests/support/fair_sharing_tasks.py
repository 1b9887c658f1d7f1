"""Tasks for the fair-sharing tests: concurrency keys with each overflow strategy, a rate
limit, and plain jobs on a queue that tenants share.

The workers of those tests run in the test's event loop; a task that must hold its slot
waits on a gate the test opens (`gates`).
"""

from __future__ import annotations

import asyncio

from tidings.worker import Job, task

KEYED_QUEUE = "keyed"
RATED_QUEUE = "rated"
RATE = "5/s"


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


gates = Gates()


@task(queue=KEYED_QUEUE, concurrency_key="{args.customer_id}", max_per_key=2, max_attempts=1)
async def export(job: Job, customer_id: str | None = None, gate: str = "") -> str:
    """At most two per customer at a time; holds its slot until `gate` opens."""
    if gate:
        await gates.wait(gate)
    return customer_id or ""


@task(
    queue=KEYED_QUEUE,
    concurrency_key="{args.customer_id}",
    max_per_key=1,
    key_strategy="cancel_newest",
    max_attempts=1,
)
async def refuse_newest(job: Job, customer_id: str, gate: str = "") -> None:
    """One per customer; a second submission is refused while one is there."""
    if gate:
        await gates.wait(gate)


@task(
    queue=KEYED_QUEUE,
    concurrency_key="{args.customer_id}",
    max_per_key=1,
    key_strategy="cancel_in_progress",
    max_attempts=1,
)
async def replace_running(job: Job, customer_id: str, gate: str = "") -> None:
    """One per customer; a new submission cancels the one there."""
    if gate:
        await gates.wait(gate)


@task(
    queue=KEYED_QUEUE,
    concurrency_key="tenant",
    max_per_key=1,
    key_strategy="keep_latest",
    max_attempts=1,
)
async def keep_latest(job: Job, version: int, gate: str = "") -> int:
    """One per tenant; only the newest waiting submission is kept."""
    if gate:
        await gates.wait(gate)
    return version


@task(queue=RATED_QUEUE, rate_limit=RATE, rate_key="{args.api}", max_attempts=1)
async def call_api(job: Job, api: str) -> str:
    """Starts at most `RATE` per API, across every worker."""
    return api


@task(concurrency_key="{args.key}", max_per_key=2, timeout=60, max_attempts=3)
async def keyed_sleep(job: Job, key: str, delay_s: float) -> str:
    """Sleep `delay_s` holding a slot of `key`; at most two per key run in the cluster."""
    await asyncio.sleep(delay_s)
    return key
