"""What every chaos test checks: job histories in Postgres and SSE streams, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import httpx
from httpx_sse import aconnect_sse

from tests.support.sse import job_events

Event = tuple[int, str, dict[str, Any]]
TERMINAL = ("succeeded", "failed", "cancelled")
POLL_S = 0.05


async def poll_until(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    """Wait until `check()` holds, for facts that only a query can tell (no log or event
    announces them); each query is a fresh look, so the wait ends as soon as it holds."""
    async with asyncio.timeout(within_s):
        while True:
            if await check():
                return
            await asyncio.sleep(POLL_S)


async def histories(pool: asyncpg.Pool, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    """Each job's events in seq order, as stored."""
    ids = list(job_ids)
    rows = await pool.fetch(
        "SELECT * FROM job_history WHERE job_id = ANY($1) ORDER BY job_id, seq", ids
    )
    found: dict[uuid.UUID, list[Any]] = {job_id: [] for job_id in ids}
    for row in rows:
        found[row["job_id"]].append(row)
    return found


async def assert_each_succeeded_once(
    pool: asyncpg.Pool, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[Any]]:
    """Every job succeeded, with exactly one `succeeded` event, last, in a gapless history."""
    ids = list(job_ids)
    jobs = {
        row["id"]: row
        for row in await pool.fetch("SELECT id, status, seq FROM jobs WHERE id = ANY($1)", ids)
    }
    assert len(jobs) == len(ids)
    statuses = Counter(row["status"] for row in jobs.values())
    assert statuses == {"succeeded": len(ids)}, statuses
    found = await histories(pool, ids)
    for job_id, events in found.items():
        seqs = [row["seq"] for row in events]
        assert seqs == list(range(1, jobs[job_id]["seq"] + 1)), (job_id, seqs)
        kinds = [row["kind"] for row in events]
        assert kinds.count("succeeded") == 1, (job_id, kinds)
        assert kinds[-1] == "succeeded", (job_id, kinds)
    return found


def assert_gapless(events: list[Event], after: int = 0) -> None:
    """A stream's seqs run after+1, after+2, … with no gap or repeat, and end terminal."""
    assert [seq for seq, _, _ in events] == list(range(after + 1, after + len(events) + 1)), [
        seq for seq, _, _ in events
    ]
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] in TERMINAL, kinds
    assert sum(kind in TERMINAL for kind in kinds) == 1, kinds


def progress_of(events: list[Event], attempt: int) -> list[float]:
    """The `current` values an attempt reported, in stream order."""
    return [
        data["current"]
        for _, kind, data in events
        if kind == "progress" and data["attempt"] == attempt
    ]


async def read_stream(
    client: httpx.AsyncClient,
    job_id: str | uuid.UUID,
    *,
    last_event_id: int | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    into: list[Event] | None = None,
) -> list[Event]:
    """The events of one SSE connection, until the server ends it.

    `into` receives each event as it arrives, so a caller keeps what came before a
    connection broke (the exception still propagates).
    """
    events: list[Event] = [] if into is None else into
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as source:
        assert source.response.status_code == 200, source.response.status_code
        async for event in job_events(source):
            events.append(event)
            on_event(event)
    return events


async def stream_under_way(
    client: httpx.AsyncClient, job_id: str, into: list[Event], *, progress: float = 3
) -> asyncio.Task[list[Event]]:
    """Start reading the job's stream into `into`; return once `progress` is reported."""
    under_way = asyncio.Event()

    def on_event(event: Event) -> None:
        if event[1] == "progress" and event[2]["current"] >= progress:
            under_way.set()

    stream = asyncio.create_task(read_stream(client, job_id, on_event=on_event, into=into))
    async with asyncio.timeout(30):
        await under_way.wait()
    return stream
