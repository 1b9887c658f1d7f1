"""The job lifecycle's failure paths against the real server and worker.

Each test asserts the exact sequence of event kinds on the job's SSE stream and the job
JSON: retries with backoff, exhausted attempts, permanent errors, timeouts, per-job
overrides, cancel in every state, manual retry, and a cancel that only the heartbeat
delivers. Waits are bounded reads of the stream (or of Redis, for a subscription), never
fixed sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from httpx_sse import aconnect_sse

from tests.support.api import get_job, history, submit
from tests.support.servers import ServerHandle, WorkerHandle, start_worker
from tests.support.sse import job_events
from tidings.core import queue
from tidings.core.db import jobs
from tidings.core.settings import Settings

WITHIN_S = 10.0
# No worker consumes this queue: a job sent there stays queued.
PARKED = "parked"
TENANT = "default"
# Consumed only by `channel_only_worker`, whose first heartbeat would come after the test.
CHANNEL_ONLY = "channel_only"
SLOW_HEARTBEAT_S = 60.0

Event = tuple[int, str, dict[str, Any]]


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The conftest settings, with this module's failing tasks loaded by the worker."""
    return replace(settings, tasks=("tidings.worker.tasks.examples", "tests.support.failure_tasks"))


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


@pytest.fixture
async def channel_only_worker(
    settings: Settings, server: ServerHandle, worker: WorkerHandle
) -> AsyncIterator[WorkerHandle]:
    """A second worker, of CHANNEL_ONLY, whose heartbeat is too slow to deliver a cancel.

    The module's worker beats every 0.5 s, which alone would meet the 1 s cancel contract;
    this one can only meet it through the Redis cancel channel. It lives for one test, well
    within `reap_after_s`, so the reaper never takes its silence for a lost worker.
    """
    slow = replace(settings, queues=(CHANNEL_ONLY,), heartbeat_s=SLOW_HEARTBEAT_S)
    async with start_worker(slow) as handle:
        # Ready does not mean subscribed: wait until both workers follow the cancel channel.
        channel = queue.Names(settings.namespace).cancel_channel
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            async with asyncio.timeout(WITHIN_S):
                # Polling is the point: the subscription is only visible from Redis.
                while (await redis.pubsub_numsub(channel))[0][1] < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        finally:
            await redis.aclose()
        yield handle


# --- helpers --------------------------------------------------------------------------------


class Stream:
    """One open SSE connection to a job's events, read a bounded step at a time."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self._events = events

    async def until(self, kind: str) -> list[Event]:
        """Events up to and including the next one of `kind`."""
        seen: list[Event] = []
        async with asyncio.timeout(WITHIN_S):
            async for event in self._events:
                seen.append(event)
                if event[1] == kind:
                    return seen
        raise AssertionError(f"the stream closed before {kind!r}: {kinds(seen)}")

    async def rest(self) -> list[Event]:
        """Every remaining event, until the server closes the stream."""
        async with asyncio.timeout(WITHIN_S):
            return [event async for event in self._events]


@asynccontextmanager
async def live(client: httpx.AsyncClient, job_id: str, last_seen: int = 0) -> AsyncIterator[Stream]:
    """The job's SSE stream, resumed after `last_seen`."""
    headers = {"Last-Event-ID": str(last_seen)} if last_seen else {}
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as source:
        assert source.response.status_code == 200
        async with aclosing(job_events(source)) as events:
            yield Stream(events)


async def stream(client: httpx.AsyncClient, job_id: str, last_seen: int = 0) -> list[Event]:
    """The job's events after `last_seen`, until the server closes the stream."""
    async with live(client, job_id, last_seen) as events:
        return await events.rest()


def kinds(events: list[Event]) -> list[str]:
    return [kind for _, kind, _ in events]


def assert_consistent(events: list[Event], job_id: str, first_seq: int = 1) -> None:
    """Seqs are gapless from `first_seq`, and each event's data names its own seq and kind."""
    assert [seq for seq, _, _ in events] == list(range(first_seq, first_seq + len(events)))
    for seq, kind, data in events:
        assert (data["job_id"], data["seq"], data["kind"]) == (job_id, seq, kind)


def at(event: Event) -> datetime:
    return datetime.fromisoformat(event[2]["at"])


async def wait_succeeded(client: httpx.AsyncClient, job_id: str) -> list[Event]:
    events = await stream(client, job_id)
    assert kinds(events)[-1] == "succeeded", kinds(events)
    return events


async def probe_after(client: httpx.AsyncClient, moment: datetime) -> None:
    """Run a job on the default queue that is due just after `moment`, to its end.

    A claim takes the best due job of its queue (highest priority, then earliest run_at),
    so once this later probe has been claimed, no job due before it, at the same priority,
    can still be claimable.
    """
    probe = await submit(client, "noop", run_at=(moment + timedelta(seconds=0.05)).isoformat())
    await wait_succeeded(client, probe["id"])


async def cleaned_up(client: httpx.AsyncClient, queue: str = "default") -> list[str]:
    """Ids of jobs whose `finally` ran in the worker of `queue`, as that worker reports them."""
    job = await submit(client, "cleaned_up", queue=queue)
    events = await wait_succeeded(client, job["id"])
    result: list[str] = events[-1][2]["data"]["result"]
    return result


def assert_error(status: int, response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


# --- retries --------------------------------------------------------------------------------


async def test_a_flaky_task_is_retried_with_backoff_until_it_succeeds(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await submit(client, "quick_flaky", args={"fail_times": 2}))["id"]
    events = await stream(client, job_id)

    assert kinds(events) == [
        "queued",
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "succeeded",
    ]
    assert_consistent(events, job_id)
    assert [data["attempt"] for _, _, data in events] == [1, 1, 1, 2, 2, 3, 3]
    statuses = [data["status"] for _, _, data in events]
    assert statuses == ["queued", *["running", "retrying"] * 2, "running", "succeeded"]

    retrying = [event for event in events if event[1] == "retrying"]
    for number, event in enumerate(retrying, 1):
        data = event[2]
        payload = data["data"]
        assert {"error", "next_attempt", "retry_at", "delay_s"} <= set(payload)
        assert payload["next_attempt"] == number + 1
        # RetryPolicy(base_s=0.01, factor=2, jitter=False): 0.01 s, then 0.02 s.
        assert payload["delay_s"] == 0.01 * 2 ** (number - 1)
        retry_at = datetime.fromisoformat(payload["retry_at"])
        # run_at is now() of the event's transaction plus the delay; `at` is a little later.
        assert retry_at - at(event) <= timedelta(seconds=payload["delay_s"])
        error = payload["error"]
        assert error["type"] == "TransientError"
        assert error["message"] == f"attempt {number} of 2 planned failures"
        assert error["traceback"].startswith("Traceback (most recent call last):")
        assert data["message"] == error["message"]
    # Each retry waits for its backoff before the next attempt starts.
    started = [event for event in events if event[1] == "started"]
    for retry_event, next_start in zip(retrying, started[1:], strict=True):
        assert at(next_start) >= datetime.fromisoformat(retry_event[2]["data"]["retry_at"])
        assert next_start[2]["data"]["worker_id"] == started[0][2]["data"]["worker_id"]
        assert at(next_start) > at(retry_event)
    assert events[-1][2]["data"]["result"] == {"attempts": 3}

    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"], job["max_attempts"]) == ("succeeded", 3, 5)
    assert job["result"] == {"attempts": 3}
    assert job["error"] is None
    assert datetime.fromisoformat(job["run_at"]) == datetime.fromisoformat(
        retrying[-1][2]["data"]["retry_at"]
    )


async def test_exhausted_attempts_fail_the_job_and_it_is_listed_as_failed(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await submit(client, "raise_error", args={"kind": "runtime"}))["id"]
    events = await stream(client, job_id)

    assert kinds(events) == [
        "queued",
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "failed",
    ]
    assert_consistent(events, job_id)
    retry_errors = [data["data"]["error"] for _, kind, data in events if kind == "retrying"]
    assert [(e["type"], e["message"]) for e in retry_errors] == [
        ("RuntimeError", "failed on purpose (attempt 1)"),
        ("RuntimeError", "failed on purpose (attempt 2)"),
    ]
    failed = events[-1][2]
    assert (failed["status"], failed["attempt"]) == ("failed", 3)
    assert failed["message"] == "failed on purpose (attempt 3)"

    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"], job["max_attempts"]) == ("failed", 3, 3)
    assert job["result"] is None
    assert job["finished_at"] is not None
    error = job["error"]
    assert set(error) == {"type", "message", "traceback"}
    assert (error["type"], error["message"]) == ("RuntimeError", "failed on purpose (attempt 3)")
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert "raise ERRORS[kind]" in error["traceback"]
    assert error["traceback"].endswith("RuntimeError: failed on purpose (attempt 3)")
    assert failed["data"]["error"] == error

    # The dead-letter view lists it, with its error.
    params = {"status": "failed", "task": "raise_error", "limit": "500"}
    response = await client.get("/jobs", params=params)
    assert response.status_code == 200, response.text
    listed = {item["id"]: item for item in response.json()["jobs"]}
    assert listed[job_id]["error"] == error
    assert {item["status"] for item in listed.values()} == {"failed"}


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("permanent", "PermanentError"),
        ("value", "ValueError"),
        ("type", "TypeError"),
        ("file", "FileNotFoundError"),
        ("quota", "QuotaExceeded"),  # in the task's no_retry
    ],
)
async def test_a_permanent_error_fails_on_the_first_attempt(
    client: httpx.AsyncClient, kind: str, error_type: str
) -> None:
    job = await submit(client, "raise_error", args={"kind": kind, "message": "no hope"})
    assert job["max_attempts"] == 3
    events = await stream(client, job["id"])

    assert kinds(events) == ["queued", "started", "failed"]
    assert_consistent(events, job["id"])
    error = events[-1][2]["data"]["error"]
    assert (error["type"], error["message"]) == (error_type, "no hope (attempt 1)")
    assert error["traceback"].endswith(f"{error_type}: no hope (attempt 1)")
    done = await get_job(client, job["id"])
    assert (done["status"], done["attempt"], done["error"]) == ("failed", 1, error)


# --- timeouts -------------------------------------------------------------------------------


async def test_a_timed_out_attempt_is_cancelled_and_retried(client: httpx.AsyncClient) -> None:
    job_id = (await submit(client, "slow_first", args={"sleep_s": 30.0}))["id"]
    events = await stream(client, job_id)

    assert kinds(events) == ["queued", "started", "retrying", "started", "succeeded"]
    assert_consistent(events, job_id)
    _, first_start, retrying, _, succeeded = events
    error = retrying[2]["data"]["error"]
    assert (error["type"], error["message"]) == ("TaskTimeout", "timed out after 0.2s")
    # The hard timeout fires at 0.2 s, not earlier, and does not wait out the 30 s sleep.
    assert timedelta(seconds=0.2) <= at(retrying) - at(first_start) < timedelta(seconds=30)

    result = succeeded[2]["data"]["result"]
    assert (result["attempt"], result["timeout_s"]) == (2, 0.2)
    assert 0 < result["time_left"] <= 0.2
    # The wall-clock deadline and time_left name the same moment.
    deadline = datetime.fromisoformat(result["deadline"])
    seen_at = datetime.fromisoformat(result["now"])
    assert deadline.tzinfo is not None
    assert abs((deadline - seen_at).total_seconds() - result["time_left"]) < 0.05

    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"], job["timeout_s"]) == ("succeeded", 2, 0.2)


async def test_a_per_job_timeout_longer_than_the_tasks_lets_the_attempt_finish(
    client: httpx.AsyncClient,
) -> None:
    # Sleeping 0.4 s would time out under the task's own 0.2 s.
    job = await submit(client, "slow_first", args={"sleep_s": 0.4}, timeout_s=5)
    assert job["timeout_s"] == 5.0
    events = await stream(client, job["id"])

    assert kinds(events) == ["queued", "started", "succeeded"]
    result = events[-1][2]["data"]["result"]
    assert (result["attempt"], result["timeout_s"]) == (1, 5.0)
    assert 0.2 < result["time_left"] <= 5.0 - 0.4


async def test_a_per_job_timeout_shorter_than_the_tasks_cancels_the_attempt(
    client: httpx.AsyncClient,
) -> None:
    job = await submit(client, "hold", timeout_s=0.2)
    events = await stream(client, job["id"])

    # `hold` has one attempt, so the timeout is final.
    assert kinds(events) == ["queued", "started", "progress", "failed"]
    error = events[-1][2]["data"]["error"]
    assert (error["type"], error["message"]) == ("TaskTimeout", "timed out after 0.2s")
    assert job["id"] in await cleaned_up(client)


# --- per-job max_attempts -------------------------------------------------------------------


async def test_a_per_job_max_attempts_below_the_tasks_fails_sooner(
    client: httpx.AsyncClient,
) -> None:
    job = await submit(client, "quick_flaky", args={"fail_times": 5}, max_attempts=2)
    assert job["max_attempts"] == 2
    events = await stream(client, job["id"])

    assert kinds(events) == ["queued", "started", "retrying", "started", "failed"]
    assert events[-1][2]["data"]["error"]["message"] == "attempt 2 of 5 planned failures"
    done = await get_job(client, job["id"])
    assert (done["status"], done["attempt"], done["max_attempts"]) == ("failed", 2, 2)


async def test_a_per_job_max_attempts_above_the_tasks_allows_more_attempts(
    client: httpx.AsyncClient,
) -> None:
    # once_flaky has max_attempts=1 of its own.
    job = await submit(client, "once_flaky", args={"fail_times": 2}, max_attempts=3)
    events = await stream(client, job["id"])

    assert kinds(events) == [
        "queued",
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "succeeded",
    ]
    done = await get_job(client, job["id"])
    assert (done["status"], done["attempt"], done["max_attempts"]) == ("succeeded", 3, 3)
    assert done["result"] == {"attempts": 3}


# --- cancel ---------------------------------------------------------------------------------


async def test_cancelling_a_queued_job_cancels_it_at_once_and_it_never_starts(
    client: httpx.AsyncClient,
) -> None:
    job = await submit(client, "quick_flaky", args={"fail_times": 0}, delay_s=1.0)
    assert job["status"] == "queued"

    response = await client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["id"], cancelled["status"]) == (job["id"], "cancelled")
    assert cancelled["finished_at"] is not None
    assert cancelled["cancel_requested_at"] is not None
    assert cancelled["started_at"] is None

    events = await stream(client, job["id"])
    assert kinds(events) == ["queued", "cancelled"]
    assert_consistent(events, job["id"])
    assert events[-1][2]["message"] == "cancelled before it started"
    assert events[-1][2]["status"] == "cancelled"

    # Its ARQ token is still due at run_at; once a job due after it has run, it had its
    # chance to be claimed.
    await probe_after(client, datetime.fromisoformat(job["run_at"]))
    assert [event["kind"] for event in await history(client, job["id"])] == [
        "queued",
        "cancelled",
    ]
    after = await get_job(client, job["id"])
    assert (after["status"], after["started_at"], after["worker_id"]) == ("cancelled", None, None)


async def test_cancelling_a_job_between_attempts_stops_its_retries(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await submit(client, "slow_retry"))["id"]
    async with live(client, job_id) as events:
        first = await events.until("retrying")
        assert kinds(first) == ["queued", "started", "retrying"]
        retry_at = datetime.fromisoformat(first[-1][2]["data"]["retry_at"])
        # A retrying job is not finished: it cannot be retried by hand.
        response = await client.post(f"/jobs/{job_id}/retry")
        assert_error(409, response, "illegal_transition")

        response = await client.post(f"/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        rest = await events.rest()
    assert kinds(first + rest) == ["queued", "started", "retrying", "cancelled"]
    assert_consistent(first + rest, job_id)

    await probe_after(client, retry_at)
    assert [event["kind"] for event in await history(client, job_id)] == [
        "queued",
        "started",
        "retrying",
        "cancelled",
    ]
    assert (await get_job(client, job_id))["status"] == "cancelled"


async def test_cancelling_a_running_job_reaches_it_through_the_channel_and_runs_its_finally(
    client: httpx.AsyncClient, channel_only_worker: WorkerHandle
) -> None:
    job = await submit(client, "hold", queue=CHANNEL_ONLY)
    job_id = job["id"]
    async with live(client, job_id) as events:
        before = await events.until("progress")
        assert kinds(before) == ["queued", "started", "progress"]

        response = await client.post(f"/jobs/{job_id}/cancel")
        assert response.status_code == 202, response.text
        # The request is recorded; the job runs until its worker cancels it.
        assert response.json()["status"] == "running"
        assert response.json()["cancel_requested_at"] is not None
        # Its worker's next heartbeat is SLOW_HEARTBEAT_S away, past the stream's wait:
        # only the Redis cancel channel can end the job in time. (How fast it does is a
        # `make bench` row, not a bound a loaded machine could break here.)
        after = await events.rest()

    assert kinds(after) == ["cancelled"]
    assert_consistent(before + after, job_id)
    cancelled = after[0][2]
    assert (cancelled["status"], cancelled["message"]) == ("cancelled", "cancelled while running")

    done = await get_job(client, job_id)
    assert done["worker_id"] == before[1][2]["data"]["worker_id"]
    assert (done["status"], done["attempt"], done["result"], done["error"]) == (
        "cancelled",
        1,
        None,
        None,
    )
    assert done["finished_at"] is not None
    assert job_id in await cleaned_up(client, CHANNEL_ONLY)


async def test_a_cancelled_job_whose_cleanup_raises_ends_cancelled_and_is_not_retried(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await submit(client, "hold_failing_cleanup"))["id"]
    async with live(client, job_id) as events:
        before = await events.until("progress")
        response = await client.post(f"/jobs/{job_id}/cancel")
        assert response.status_code == 202, response.text
        after = await events.rest()

    # The error its `finally` raised is not a failure of the job: the cancel caused it.
    assert kinds(before + after) == ["queued", "started", "progress", "cancelled"]
    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"]) == ("cancelled", 1)


async def test_a_cancel_the_worker_missed_on_redis_arrives_with_the_heartbeat(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job_id = (await submit(client, "hold"))["id"]
    async with live(client, job_id) as events:
        before = await events.until("progress")
        # Record the request as the server would, but publish nothing on the cancel channel.
        row = await jobs.request_cancel(pool, job_id=uuid.UUID(job_id), tenant=TENANT)
        assert row is not None and row["status"] == "running"
        after = await events.rest()

    assert kinds(before + after) == ["queued", "started", "progress", "cancelled"]
    assert_consistent(before + after, job_id)
    assert (await get_job(client, job_id))["status"] == "cancelled"
    assert job_id in await cleaned_up(client)


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
async def test_cancelling_a_finished_job_is_an_illegal_transition(
    client: httpx.AsyncClient, outcome: str
) -> None:
    if outcome == "cancelled":
        job_id = (await submit(client, "noop", queue=PARKED))["id"]
        assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    else:
        task, args = ("noop", {}) if outcome == "succeeded" else ("raise_error", {"kind": "value"})
        job_id = (await submit(client, task, args=args))["id"]
        assert kinds(await stream(client, job_id))[-1] == outcome
    seq_before = len(await history(client, job_id))

    response = await client.post(f"/jobs/{job_id}/cancel")
    error = assert_error(409, response, "illegal_transition")
    assert error["details"] == {"status": outcome}
    assert (await get_job(client, job_id))["status"] == outcome
    assert len(await history(client, job_id)) == seq_before


@pytest.mark.parametrize("action", ["cancel", "retry"])
@pytest.mark.parametrize("raw_id", [str(uuid.uuid4()), "not-a-job-id"])
async def test_cancel_or_retry_of_an_unknown_job_is_404(
    client: httpx.AsyncClient, action: str, raw_id: str
) -> None:
    response = await client.post(f"/jobs/{raw_id}/{action}")
    assert_error(404, response, "not_found")


# --- manual retry ---------------------------------------------------------------------------


async def test_a_failed_job_retried_by_hand_runs_again_and_can_succeed(
    client: httpx.AsyncClient,
) -> None:
    # One attempt of its own: the first failure is final.
    job_id = (await submit(client, "once_flaky", args={"fail_times": 1}))["id"]
    first = await stream(client, job_id)
    assert kinds(first) == ["queued", "started", "failed"]

    response = await client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 202, response.text
    retried = response.json()
    assert (retried["status"], retried["attempt"], retried["max_attempts"]) == ("queued", 2, 2)
    assert (retried["error"], retried["result"], retried["finished_at"]) == (None, None, None)

    # The first run's stream ended at its terminal event; a client resumes after it.
    second = await stream(client, job_id, last_seen=len(first))
    assert kinds(second) == ["queued", "started", "succeeded"]
    assert_consistent(first + second, job_id)
    requeued = second[0][2]
    assert requeued["data"]["reason"] == "manual retry"
    assert (requeued["status"], requeued["attempt"]) == ("queued", 2)
    assert [data["attempt"] for _, _, data in second] == [2, 2, 2]
    assert second[-1][2]["data"]["result"] == {"attempts": 2}
    assert [event["kind"] for event in await history(client, job_id)] == kinds(first + second)

    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"], job["result"], job["error"]) == (
        "succeeded",
        2,
        {"attempts": 2},
        None,
    )


async def test_a_subscriber_from_the_start_sees_every_run_of_a_job_retried_by_hand(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await submit(client, "once_flaky", args={"fail_times": 1}))["id"]
    assert kinds(await stream(client, job_id)) == ["queued", "started", "failed"]
    assert (await client.post(f"/jobs/{job_id}/retry")).status_code == 202

    # The first run's `failed` is not the job's end any more: the stream goes on past it.
    events = await stream(client, job_id)
    assert kinds(events) == ["queued", "started", "failed", "queued", "started", "succeeded"]
    assert_consistent(events, job_id)
    assert (await get_job(client, job_id))["status"] == "succeeded"


async def test_a_failed_job_retried_by_hand_can_fail_again(client: httpx.AsyncClient) -> None:
    job_id = (await submit(client, "raise_error", args={"kind": "permanent"}))["id"]
    first = await stream(client, job_id)
    assert kinds(first) == ["queued", "started", "failed"]

    response = await client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 202, response.text
    assert (response.json()["attempt"], response.json()["max_attempts"]) == (2, 3)

    second = await stream(client, job_id, last_seen=len(first))
    assert kinds(second) == ["queued", "started", "failed"]
    assert_consistent(first + second, job_id)
    assert second[0][2]["data"]["reason"] == "manual retry"
    error = second[-1][2]["data"]["error"]
    assert (error["type"], error["message"]) == ("PermanentError", "failed on purpose (attempt 2)")
    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"], job["error"]) == ("failed", 2, error)


async def test_a_cancelled_job_retried_by_hand_runs(client: httpx.AsyncClient) -> None:
    job_id = (await submit(client, "quick_flaky", args={"fail_times": 0}, delay_s=30))["id"]
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200

    response = await client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested_at"] is None
    # A manual retry is due now, not at the original delay.
    events = await stream(client, job_id, last_seen=2)
    assert kinds(events) == ["queued", "started", "succeeded"]
    assert_consistent(events, job_id, first_seq=3)
    assert events[0][2]["data"]["reason"] == "manual retry"
    job = await get_job(client, job_id)
    assert (job["status"], job["attempt"], job["result"]) == ("succeeded", 2, {"attempts": 2})


async def test_only_failed_or_cancelled_jobs_can_be_retried(client: httpx.AsyncClient) -> None:
    succeeded = (await submit(client, "noop"))["id"]
    await wait_succeeded(client, succeeded)
    queued = (await submit(client, "noop", queue=PARKED))["id"]
    running = (await submit(client, "hold"))["id"]
    async with live(client, running) as events:
        await events.until("progress")
        try:
            cases = ((succeeded, "succeeded"), (queued, "queued"), (running, "running"))
            for job_id, status in cases:
                seqs = len(await history(client, job_id))
                response = await client.post(f"/jobs/{job_id}/retry")
                error = assert_error(409, response, "illegal_transition")
                assert error["details"] == {"status": status}
                job = await get_job(client, job_id)
                assert (job["status"], job["attempt"]) == (status, 1)
                assert len(await history(client, job_id)) == seqs
        finally:
            await client.post(f"/jobs/{running}/cancel")
            await client.post(f"/jobs/{queued}/cancel")
        assert kinds(await events.rest()) == ["cancelled"]
