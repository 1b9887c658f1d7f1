"""SSE streams of a job: every event exactly once, in order, wherever the subscriber joins.

Runs the real server and worker; each stream is read with httpx-sse, and each wait on the
job is a bounded loop on the HTTP API, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from tests.support.api import until
from tests.support.servers import ServerHandle, WorkerHandle
from tests.support.sse import job_events
from tidings.core import queue
from tidings.core.model import TERMINAL_STATUSES
from tidings.core.settings import Settings

WITHIN_S = 10.0
# No worker consumes this queue: jobs sent there stay queued, which the list tests use.
PARKED = "parked"

Event = tuple[int, str, dict[str, Any]]


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


async def submit(client: httpx.AsyncClient, task: str, **fields: Any) -> str:
    response = await client.post("/jobs", json={"task": task, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def sleep_steps(client: httpx.AsyncClient, steps: int, delay_s: float) -> str:
    return await submit(client, "sleep_steps", args={"steps": steps, "delay_s": delay_s})


def expected_kinds(steps: int) -> list[str]:
    return ["queued", "started", *["progress"] * steps, "succeeded"]


async def stream(
    client: httpx.AsyncClient,
    job_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    take: int | None = None,
) -> list[Event]:
    """The events of one SSE connection: all until the server closes it, or the first `take`."""
    seen: list[Event] = []
    async with (
        asyncio.timeout(WITHIN_S),
        aconnect_sse(
            client, "GET", f"/jobs/{job_id}/events", headers=dict(headers or {}), params=params
        ) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in job_events(source):
            seen.append(event)
            if len(seen) == take:
                break
    return seen


async def history(client: httpx.AsyncClient, job_id: str, after: int | None = None) -> list[Any]:
    """The job's events from the JSON history endpoint."""
    response = await client.get(
        f"/jobs/{job_id}/events",
        params=None if after is None else {"after": str(after)},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    events: list[Any] = response.json()["events"]
    return events


async def finished_job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's JSON once it has reached a terminal status."""

    async def terminal() -> dict[str, Any] | None:
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        return job if job["status"] in TERMINAL_STATUSES else None

    job: dict[str, Any] = await until(terminal, WITHIN_S, every_s=0.005)
    return job


def assert_sleep_steps_events(events: list[Event], job_id: str, steps: int) -> None:
    """`events` are exactly seq 1..N of a successful sleep_steps job, each consistent."""
    assert [seq for seq, _, _ in events] == list(range(1, steps + 4))
    assert [kind for _, kind, _ in events] == expected_kinds(steps)
    for seq, kind, data in events:
        assert (data["seq"], data["kind"], data["job_id"]) == (seq, kind, job_id)
    progress = [data for _, kind, data in events if kind == "progress"]
    numbers = range(1, steps + 1)
    assert [(p["current"], p["total"]) for p in progress] == [(i, steps) for i in numbers]
    assert [p["message"] for p in progress] == [f"step {i} of {steps}" for i in numbers]
    assert events[-1][2]["data"]["result"] == {"steps": steps}
    assert events[-1][2]["data"]["run_s"] >= 0
    assert events[-1][2]["status"] == "succeeded"


# --- (a) after the job finished -------------------------------------------------------------


async def test_a_late_subscriber_gets_the_whole_history_then_the_stream_closes(
    client: httpx.AsyncClient,
) -> None:
    job_id = await sleep_steps(client, steps=5, delay_s=0.001)
    await finished_job(client, job_id)
    events = await stream(client, job_id)  # returns only because the server closed it
    assert_sleep_steps_events(events, job_id, steps=5)


# --- (b) during the job ---------------------------------------------------------------------


async def test_a_subscriber_joining_mid_job_gets_history_then_live_without_gap_or_duplicate(
    client: httpx.AsyncClient,
) -> None:
    steps = 15
    job_id = await sleep_steps(client, steps=steps, delay_s=0.02)
    await until(lambda: _has_progress(client, job_id), WITHIN_S, every_s=0.005)
    seen: list[Event] = []
    status_when_subscribed = None
    async with (
        asyncio.timeout(WITHIN_S),
        aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source,
    ):
        async for event in job_events(source):
            if not seen:
                # The server subscribes before it replays, so from here on every later
                # event reaches this stream live; the job must still have some to send.
                status_when_subscribed = (await client.get(f"/jobs/{job_id}")).json()["status"]
            seen.append(event)
    assert status_when_subscribed == "running"
    assert seen[0][0] == 1
    assert_sleep_steps_events(seen, job_id, steps=steps)


async def _has_progress(client: httpx.AsyncClient, job_id: str) -> bool:
    return any(event["kind"] == "progress" for event in await history(client, job_id))


# --- (c, d) resuming after a disconnect -----------------------------------------------------


@pytest.mark.parametrize("resume_by", ["last-event-id", "after"])
async def test_a_reconnect_resumes_exactly_after_the_last_seen_event(
    client: httpx.AsyncClient, resume_by: str
) -> None:
    steps, k = 8, 4
    job_id = await sleep_steps(client, steps=steps, delay_s=0.01)
    first = await stream(client, job_id, take=k)
    assert [seq for seq, _, _ in first] == [1, 2, 3, 4]
    if resume_by == "last-event-id":
        rest = await stream(client, job_id, headers={"Last-Event-ID": str(k)})
    else:
        rest = await stream(client, job_id, params={"after": str(k)})
    assert rest[0][0] == k + 1
    assert_sleep_steps_events(first + rest, job_id, steps=steps)


async def test_last_event_id_wins_over_after(client: httpx.AsyncClient) -> None:
    job_id = await sleep_steps(client, steps=3, delay_s=0.001)
    await finished_job(client, job_id)
    events = await stream(client, job_id, headers={"Last-Event-ID": "4"}, params={"after": "1"})
    assert [seq for seq, _, _ in events] == [5, 6]


# --- (e) resuming at or past the end --------------------------------------------------------


async def test_resuming_from_the_terminal_event_closes_at_once_with_nothing(
    client: httpx.AsyncClient,
) -> None:
    job_id = await sleep_steps(client, steps=2, delay_s=0.001)
    await finished_job(client, job_id)
    terminal_seq = (await history(client, job_id))[-1]["seq"]
    assert terminal_seq == 5
    assert await stream(client, job_id, headers={"Last-Event-ID": "5"}) == []
    assert await stream(client, job_id, params={"after": "5"}) == []


@pytest.mark.parametrize("past_end", [1, 1000])
async def test_resuming_past_the_last_event_is_rejected(
    client: httpx.AsyncClient, past_end: int
) -> None:
    # No client can have seen an event that does not exist; following from there would
    # skip everything the job still does.
    job_id = await sleep_steps(client, steps=2, delay_s=0.001)
    await finished_job(client, job_id)
    last_seen = str(5 + past_end)
    for kwargs in ({"headers": {"Last-Event-ID": last_seen}}, {"params": {"after": last_seen}}):
        response = await client.get(f"/jobs/{job_id}/events", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_query"


# --- (f) the JSON history -------------------------------------------------------------------


async def test_the_json_history_returns_every_event_in_order(client: httpx.AsyncClient) -> None:
    steps = 4
    job_id = await sleep_steps(client, steps=steps, delay_s=0.001)
    await finished_job(client, job_id)
    events = await history(client, job_id)
    assert [event["seq"] for event in events] == list(range(1, steps + 4))
    assert [event["kind"] for event in events] == expected_kinds(steps)
    # The same events, in the same shape, as the SSE stream sends.
    assert [data for _, _, data in await stream(client, job_id)] == events
    assert await history(client, job_id, after=3) == events[3:]
    assert await history(client, job_id, after=steps + 3) == []


async def test_a_client_accepting_both_gets_the_stream(client: httpx.AsyncClient) -> None:
    job_id = await sleep_steps(client, steps=1, delay_s=0.001)
    await finished_job(client, job_id)
    # Not through aconnect_sse, which would replace this Accept header with its own.
    headers = {"accept": "application/json, text/event-stream"}
    response = await client.get(f"/jobs/{job_id}/events", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    ids = [line for line in response.text.splitlines() if line.startswith("id:")]
    assert ids == ["id: 1", "id: 2", "id: 3", "id: 4"]


# --- (g) a failing task ---------------------------------------------------------------------


async def test_a_failing_task_streams_its_error_and_keeps_it_on_the_job(
    client: httpx.AsyncClient,
) -> None:
    # One attempt, so a failure is final whatever the retry policy says.
    job_id = await submit(client, "fail", args={"message": "boom"}, max_attempts=1)
    events = await stream(client, job_id)
    assert [(seq, kind) for seq, kind, _ in events] == [
        (1, "queued"),
        (2, "started"),
        (3, "failed"),
    ]
    failed = events[-1][2]
    assert failed["status"] == "failed"
    assert failed["message"] == "boom"
    error = failed["data"]["error"]
    assert set(error) == {"type", "message", "traceback"}
    assert (error["type"], error["message"]) == ("PermanentError", "boom")
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert "raise PermanentError(message)" in error["traceback"]
    assert error["traceback"].endswith("PermanentError: boom")

    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "failed"
    assert job["error"] == error
    assert job["result"] is None
    assert job["finished_at"] is not None


# --- (h) listing jobs -----------------------------------------------------------------------


async def all_pages(client: httpx.AsyncClient, **params: str) -> tuple[list[Any], list[int]]:
    """Every job `GET /jobs` lists under `params`, following next_cursor; and the page sizes."""
    jobs: list[Any] = []
    sizes: list[int] = []
    cursor = None
    async with asyncio.timeout(WITHIN_S):
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = await client.get("/jobs", params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            jobs.extend(page["jobs"])
            sizes.append(len(page["jobs"]))
            cursor = page["next_cursor"]
            if cursor is None:
                return jobs, sizes


async def test_paging_lists_every_job_once_newest_first_and_filters_apply(
    client: httpx.AsyncClient,
) -> None:
    submitted = [
        await submit(client, "noop"),
        await submit(client, "fail", max_attempts=1),
        await submit(client, "noop"),
        await submit(client, "noop", queue=PARKED),
        await submit(client, "fail", max_attempts=1),
        await submit(client, "noop"),
    ]
    parked = submitted[3]
    for job_id in submitted:
        if job_id != parked:
            await finished_job(client, job_id)

    # Every job in this module's database, earlier tests' included, is settled by now.
    everything, sizes = await all_pages(client, limit="500")
    assert sizes == [len(everything)]
    assert all(job["status"] in TERMINAL_STATUSES or job["queue"] == PARKED for job in everything)

    paged, sizes = await all_pages(client, limit="2")
    ids = [job["id"] for job in paged]
    assert ids == [job["id"] for job in everything]
    assert len(set(ids)) == len(ids)
    assert sizes[:-1] == [2] * (len(sizes) - 1) and 1 <= sizes[-1] <= 2
    created = [job["created_at"] for job in paged]
    assert created == sorted(created, reverse=True)
    assert ids[: len(submitted)] == submitted[::-1]

    def where(**match: str) -> list[str]:
        return [j["id"] for j in everything if all(j[k] == v for k, v in match.items())]

    for params in (
        {"status": "succeeded"},
        {"status": "failed"},
        {"status": "queued"},
        {"task": "noop"},
        {"task": "fail", "status": "failed"},
        {"task": "noop", "status": "succeeded"},
        {"queue": PARKED},
        {"task": "no_such_task"},
    ):
        filtered, _ = await all_pages(client, limit="2", **params)
        assert [job["id"] for job in filtered] == where(**params), params
    assert where(status="queued") == [parked]
    assert set(submitted[1::3]) <= set(where(task="fail", status="failed"))


# --- what else may arrive on the events channel --------------------------------------------


async def test_unreadable_messages_on_the_events_channel_do_not_stop_live_streams(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    job_id = await sleep_steps(client, steps=6, delay_s=0.1)
    streamed = asyncio.create_task(stream(client, job_id))
    redis = await queue.connect(settings.redis_url)
    try:
        channel = queue.Names(settings.namespace).events_channel
        for junk in (b"not json", b"[1, 2]", b'{"no": "event fields"}', b"[{}]"):
            await redis.publish(channel, junk)
    finally:
        await redis.aclose()
    assert_sleep_steps_events(await streamed, job_id, 6)


def test_an_events_message_is_an_array_of_events_or_runs_or_one_event() -> None:
    event = {"job_id": "j", "seq": 1, "kind": "queued"}
    run = {
        "job_id": "j",
        "task": "t",
        "queue": "q",
        "tenant": "a",
        "status": "running",
        "attempt": 1,
        "at": "2026-01-01T00:00:00+00:00",
        "first_seq": 3,
        "events": [["progress", 1.0, 2.0, "half", None], ["log", None, None, "hi", {"n": 1}]],
    }
    decoded = queue.decode_events(orjson.dumps([event, run]))
    assert decoded[0] == event
    assert [(e["seq"], e["kind"], e["current"], e["message"], e["data"]) for e in decoded[1:]] == [
        (3, "progress", 1.0, "half", None),
        (4, "log", None, "hi", {"n": 1}),
    ]
    assert all(e["status"] == "running" and e["tenant"] == "a" for e in decoded[1:])
    for unreadable in (orjson.dumps(event), b"[1, 2]"):  # one bare object is not a message
        with pytest.raises(ValueError):
            queue.decode_events(unreadable)
