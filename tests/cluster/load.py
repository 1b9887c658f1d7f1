"""Load for the cluster suite: submissions spread over servers, and streams that fail over.

A submission carries an idempotency key and is sent again (to the next server) until one
accepts it, so a fault that cuts a request after its commit never makes a second job. A
stream that breaks is opened again on the next server with `Last-Event-ID`, as a browser's
EventSource (or tidings' own resuming client) does.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from httpx_sse import aconnect_sse

from tests.chaos.checks import TERMINAL, Event, assert_each_succeeded_once, poll_until
from tests.support.sse import job_events

RETRY_S = 0.05
# Statuses that mean "this server cannot take it now, try again": Postgres or Redis away.
RETRYABLE = {502, 503, 504}
SENDERS = 8


@dataclass
class Servers:
    """HTTP clients for each server process, used in turn."""

    urls: Sequence[str]
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    accepted: int = 0

    async def __aenter__(self) -> Servers:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        self.clients = [
            httpx.AsyncClient(base_url=url, timeout=30, limits=limits) for url in self.urls
        ]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for client in self.clients:
            await client.aclose()

    async def submit(self, task: str, args: dict[str, Any], first: int = 0) -> str:
        """The id of a new job, sent to server `first` and the others in turn until accepted."""
        key = uuid.uuid4().hex
        body = {"task": task, "args": args}
        for index in itertools.count(first):
            client = self.clients[index % len(self.clients)]
            try:
                response = await client.post("/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                await asyncio.sleep(RETRY_S)
                continue
            if response.status_code in RETRYABLE:
                await asyncio.sleep(RETRY_S)
                continue
            assert response.status_code in (200, 202), response.text
            self.accepted += 1
            job_id: str = response.json()["id"]
            return job_id
        raise AssertionError("unreachable")

    async def submit_batch(self, jobs: list[dict[str, Any]], first: int = 0) -> None:
        """Submit `jobs` (each with its own idempotency key) in one `POST /jobs/batch`, sent
        again to the next server until one has committed it."""
        body = {"jobs": jobs}
        sent = False
        for index in itertools.count(first):
            client = self.clients[index % len(self.clients)]
            try:
                response = await client.post("/jobs/batch", json=body)
            except httpx.TransportError:
                sent = True  # it may have committed before the connection broke
                await asyncio.sleep(RETRY_S)
                continue
            if response.status_code in RETRYABLE:
                sent = True
                await asyncio.sleep(RETRY_S)
                continue
            # 409 to a batch sent again: its keys are taken, by its own earlier commit.
            assert response.status_code == 202 or (sent and response.status_code == 409), (
                response.status_code,
                response.text[:300],
            )
            self.accepted += len(jobs)
            return

    async def submit_many(
        self,
        count: int,
        task: str,
        args: dict[str, Any],
        *,
        per_s: float | None = None,
        batch: int = 25,
    ) -> list[str]:
        """Submit `count` jobs in batches spread over every server, optionally paced at
        `per_s`; returns their idempotency keys (`job_ids` turns them into ids)."""
        keys = [uuid.uuid4().hex for _ in range(count)]
        batches = [keys[at : at + batch] for at in range(0, count, batch)]
        counter = itertools.count()
        start = time.monotonic()

        async def sender() -> None:
            while (index := next(counter)) < len(batches):
                if per_s is not None:
                    delay = start + index * batch / per_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                jobs = [{"task": task, "args": args, "idempotency_key": k} for k in batches[index]]
                await self.submit_batch(jobs, first=index)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        return keys

    async def open_jobs(self, count: int, task: str, args: dict[str, Any]) -> list[str]:
        """`count` jobs submitted one `POST /jobs` each, over every server: their ids."""
        return await asyncio.gather(
            *(self.submit(task, args, first=index) for index in range(count))
        )

    async def follow(
        self, job_id: str, first: int = 0, on_event: Callable[[Event], None] = lambda _e: None
    ) -> Stream:
        """Read the job's stream to its terminal event, reopening it on the next server with
        `Last-Event-ID` whenever a connection breaks."""
        stream = Stream(job_id)
        for index in itertools.count(first):
            client = self.clients[index % len(self.clients)]
            headers = {} if not stream.events else {"Last-Event-ID": str(stream.events[-1][0])}
            try:
                async with aconnect_sse(
                    client, "GET", f"/jobs/{job_id}/events", headers=headers
                ) as source:
                    if source.response.status_code in RETRYABLE:
                        await asyncio.sleep(RETRY_S)
                        continue
                    assert source.response.status_code == 200, source.response.status_code
                    stream.connections += 1
                    async for event in job_events(source):
                        stream.events.append(event)
                        on_event(event)
            except httpx.TransportError:
                await asyncio.sleep(RETRY_S)
                continue
            if stream.events and stream.events[-1][1] in TERMINAL:
                return stream
        raise AssertionError("unreachable")


@dataclass
class Stream:
    """What one client read of a job's stream, over however many connections."""

    job_id: str
    events: list[Event] = field(default_factory=list)
    connections: int = 0


async def job_ids(db: asyncpg.Pool, keys: Sequence[str]) -> list[str]:
    """The ids of the jobs submitted with these idempotency keys; every key has one."""
    rows = await db.fetch("SELECT id FROM jobs WHERE idempotency_key = ANY($1)", list(keys))
    assert len(rows) == len(keys), f"{len(keys) - len(rows)} accepted submissions left no job"
    return [str(row["id"]) for row in rows]


async def until_all_finished(db: asyncpg.Pool, job_ids: Sequence[str], within_s: float) -> None:
    """Wait until every job is in a terminal status (a fact only a query can tell)."""
    ids = [uuid.UUID(job_id) for job_id in job_ids]

    async def finished() -> bool:
        done: int = await db.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = ANY($2)", ids, TERMINAL
        )
        return done == len(ids)

    try:
        await poll_until(finished, within_s=within_s)
    except TimeoutError:
        raise AssertionError(await _unfinished(db, ids)) from None


async def _unfinished(db: asyncpg.Pool, ids: list[uuid.UUID]) -> str:
    """What a wait that timed out left: counts by status, and a few unfinished jobs."""
    counts = await db.fetch(
        "SELECT status, count(*) FROM jobs WHERE id = ANY($1) GROUP BY status", ids
    )
    stuck = await db.fetch(
        "SELECT id, status, attempt, worker_id, updated_at FROM jobs"
        " WHERE id = ANY($1) AND status <> ALL($2) LIMIT 3",
        ids,
        TERMINAL,
    )
    events = await db.fetch(
        "SELECT job_id, seq, kind, attempt, message, data, at FROM job_history"
        " WHERE job_id = ANY($1) ORDER BY job_id, seq",
        [row["id"] for row in stuck],
    )
    return (
        f"not finished in time: {dict((row['status'], row['count']) for row in counts)}; "
        f"e.g. {[dict(row) for row in stuck]}; their events: {[dict(row) for row in events]}"
    )


async def assert_each_ran_once(db: asyncpg.Pool, job_ids: Sequence[str]) -> int:
    """Every job succeeded, started exactly once, with a gapless history; the events checked."""
    ids = [uuid.UUID(job_id) for job_id in job_ids]
    unsuccessful = await db.fetch(
        "SELECT id, status, attempt, error FROM jobs WHERE id = ANY($1) AND status <> 'succeeded'"
        " LIMIT 5",
        ids,
    )
    assert not unsuccessful, [dict(row) for row in unsuccessful]
    found = await assert_each_succeeded_once(db, ids)
    for job_id, events in found.items():
        # An attempt whose claim reply was lost has a `started` event, but never ran.
        never_ran = {
            row["attempt"] - 1
            for row in events
            if row["kind"] == "requeued" and (row["data"] or {}).get("reason") == "claim_reply_lost"
        }
        runs = [r for r in events if r["kind"] == "started" and r["attempt"] not in never_ran]
        assert len(runs) == 1, (job_id, [_brief(row) for row in events])
    return sum(len(events) for events in found.values())


def _brief(row: Any) -> dict[str, Any]:
    """The parts of a stored event that explain a failure."""
    keys = ("seq", "kind", "attempt", "message", "data", "at")
    return {key: row[key] for key in keys if key in row}


def assert_stream_matches(stream: Stream, history: list[Any]) -> None:
    """A stream got the job's stored history: every event once, in order, none missing."""
    seqs = [seq for seq, _, _ in stream.events]
    assert seqs == [row["seq"] for row in history], (stream.job_id, seqs)
    assert [kind for _, kind, _ in stream.events] == [row["kind"] for row in history]


async def handed_back_unrun(db: asyncpg.Pool, job_ids: Sequence[str]) -> set[str]:
    """The jobs a worker handed back because their claim's reply was lost."""
    rows = await db.fetch(
        "SELECT DISTINCT job_id FROM job_history WHERE job_id = ANY($1)"
        " AND kind = 'requeued' AND data->>'reason' = 'claim_reply_lost'",
        [uuid.UUID(job_id) for job_id in job_ids],
    )
    return {str(row["job_id"]) for row in rows}


async def finish_times(db: asyncpg.Pool, job_ids: Sequence[str]) -> list[datetime]:
    """When each job finished, in order."""
    rows = await db.fetch(
        "SELECT finished_at FROM jobs WHERE id = ANY($1) ORDER BY finished_at",
        [uuid.UUID(job_id) for job_id in job_ids],
    )
    return [row["finished_at"] for row in rows]


async def throughput(db: asyncpg.Pool, job_ids: Sequence[str]) -> float:
    """Jobs finished per second, from the first submission to the last finish."""
    first, last = await db.fetchrow(
        "SELECT min(created_at), max(finished_at) FROM jobs WHERE id = ANY($1)",
        [uuid.UUID(job_id) for job_id in job_ids],
    )
    return len(job_ids) / max((last - first).total_seconds(), 1e-9)


def longest_gap_after(times: list[datetime], moment: datetime) -> float:
    """The longest time, from `moment` on, in which no job finished: the stall a fault caused."""
    after = [moment] + [at for at in times if at >= moment]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(after)]
    return max(gaps, default=0.0)
