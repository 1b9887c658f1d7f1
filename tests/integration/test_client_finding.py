"""The Python client's job-list filters, bulk actions and trends against the real server and
worker: each filter narrows the list as `GET /jobs` does, bulk cancel and retry say what
they did to each job, a filtered retry is bounded (`more`), trends count the jobs that ran,
and bad filters arrive as the client's typed errors.

As in test_client.py the sync `Client` runs in a thread; waits are on job streams
(`wait`), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import httpx
import pytest

from tests.support.servers import ServerHandle, WorkerHandle
from tidings.client import AsyncClient, BulkResult, Client, Job, JobFilters, errors
from tidings.core import bulk

WITHIN_S = 10.0


def parked_queue(label: str = "") -> str:
    """A queue no worker consumes: jobs sent there stay queued."""
    return f"parked-{uuid.uuid4().hex[:8]}{label}"


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, timeout_s=WITHIN_S) as client:
        yield client


@pytest.fixture
async def http(server: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API itself, to compare the client's answers with."""
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as http:
        yield http


async def listed(client: AsyncClient, **filters: Any) -> list[str]:
    """The ids of every job the filters match, newest first."""
    return [job.id async for job in client.iter_jobs(**cast(JobFilters, filters))]


async def listed_by_http(http: httpx.AsyncClient, **params: str) -> list[str]:
    response = await http.get("/jobs", params={**params, "limit": "200"})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [job["id"] for job in response.json()["jobs"]]


async def failed_jobs(client: AsyncClient, count: int) -> list[Job]:
    """`count` jobs of the `fail` task, submitted one after another and run to failure."""
    jobs = [await client.submit("fail", message=f"broken {n}") for n in range(count)]
    done = [await client.wait(job.id, timeout=WITHIN_S) for job in jobs]
    assert {job.status for job in done} == {"failed"}
    return done


# --- filters --------------------------------------------------------------------------------


async def test_name_filters_narrow_the_list_as_the_http_api_does(
    client: AsyncClient, http: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4().hex[:8]
    alpha, beta = f"parked-{marker}-alpha", f"parked-{marker}-beta"
    noop_alpha = (await client.submit("noop", queue=alpha)).id
    sleep_alpha = (await client.submit("sleep_steps", queue=alpha)).id
    fail_beta = (await client.submit("fail", queue=beta)).id
    sleep_beta = (await client.submit("sleep_steps", queue=beta)).id
    ours = f"parked-{marker}-"

    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"queue_prefix": ours}, [sleep_beta, fail_beta, sleep_alpha, noop_alpha]),
        ({"queue_prefix": f"{ours}a"}, [sleep_alpha, noop_alpha]),
        ({"queue_contains": f"{marker}-bet"}, [sleep_beta, fail_beta]),
        ({"queue_prefix": ours, "task_prefix": "sleep_"}, [sleep_beta, sleep_alpha]),
        ({"queue_prefix": ours, "task_contains": "oop"}, [noop_alpha]),
        ({"queue_contains": marker, "task_contains": "ail"}, [fail_beta]),
        ({"queue_prefix": ours, "task_prefix": "sleep_steps", "queue": beta}, [sleep_beta]),
        ({"queue_prefix": ours, "task_prefix": "no_such"}, []),
    ]
    for filters, expected in cases:
        assert await listed(client, **filters) == expected, filters
        assert await listed_by_http(http, **filters) == expected, filters

    page = await client.list(queue_prefix=ours, task_prefix="sleep_", limit=1)
    assert [job.id for job in page.jobs] == [sleep_beta] and page.next_cursor is not None
    rest = await client.list(queue_prefix=ours, task_prefix="sleep_", cursor=page.next_cursor)
    assert [job.id for job in rest.jobs] == [sleep_alpha] and rest.next_cursor is None


async def test_created_after_is_inclusive_and_created_before_exclusive(
    client: AsyncClient, http: httpx.AsyncClient
) -> None:
    queue = parked_queue()
    first, middle, last = [await client.submit("noop", queue=queue) for _ in range(3)]
    assert first.created_at and middle.created_at and last.created_at
    assert first.created_at < middle.created_at < last.created_at
    at = middle.created_at

    assert await listed(client, queue=queue, created_after=at) == [last.id, middle.id]
    assert await listed(client, queue=queue, created_before=at) == [first.id]
    between = {"created_after": first.created_at, "created_before": last.created_at}
    assert await listed(client, queue=queue, **between) == [middle.id, first.id]
    # The same instant in another zone is the same filter: the offset is sent.
    plus_two = at.astimezone(timezone(timedelta(hours=2)))
    assert await listed(client, queue=queue, created_after=plus_two) == [last.id, middle.id]
    assert await listed_by_http(http, queue=queue, created_after=at.isoformat()) == [
        last.id,
        middle.id,
    ]
    later = last.created_at + timedelta(seconds=1)
    assert await listed(client, queue=queue, created_after=later) == []

    with pytest.raises(ValueError, match="created_after must be timezone-aware"):
        await client.list(created_after=at.replace(tzinfo=None))
    with pytest.raises(TypeError, match="unknown job filter"):
        await client.list(**cast(JobFilters, {"queue_prefx": queue}))


async def test_iter_jobs_walks_every_page_of_a_filter(client: AsyncClient) -> None:
    queue = parked_queue()
    sleeps = [(await client.submit("sleep_steps", queue=queue)).id for _ in range(5)]
    await client.submit("noop", queue=queue)

    walked = [job async for job in client.iter_jobs(queue=queue, task_prefix="sleep", page_size=2)]

    assert [job.id for job in walked] == sleeps[::-1]
    assert {job.task for job in walked} == {"sleep_steps"}


async def test_existing_filters_still_work_beside_the_new_ones(client: AsyncClient) -> None:
    queue = parked_queue()
    kept = await client.submit("noop", queue=queue)
    cancelled = await client.submit("noop", queue=queue)
    await client.cancel(cancelled.id)

    queued = await client.list(status="queued", queue=queue, task="noop", limit=10)
    assert [job.id for job in queued.jobs] == [kept.id]
    none = await client.list(status="queued", queue=queue, task=None, batch_id=None)
    assert [job.id for job in none.jobs] == [kept.id]  # None still means "any"


# --- bulk actions ---------------------------------------------------------------------------


async def test_bulk_cancel_cancels_waiting_jobs_and_says_what_it_did_to_each(
    client: AsyncClient,
) -> None:
    queue = parked_queue()
    parked = [(await client.submit("noop", queue=queue)).id for _ in range(3)]
    running = await client.submit("sleep_steps", steps=200, args={"delay_s": 0.05})
    async with asyncio.timeout(WITHIN_S):
        async for event in client.stream(running.id):
            if event.kind == "progress":
                break
    finished = await client.submit("noop")
    await client.wait(finished.id, timeout=WITHIN_S)
    missing = str(uuid.uuid4())

    result = await client.bulk_cancel([*parked, running.id, finished.id, missing])

    assert result.action == "cancel" and result.more is None
    assert [item.id for item in result.results] == [*parked, running.id, finished.id, missing]
    assert result.ids("cancelled") == parked
    assert result.ids("cancel_requested") == [running.id]
    assert result.ids("skipped") == [finished.id]
    assert result.ids("not_found") == [missing]
    assert result.counts == {"cancelled": 3, "cancel_requested": 1, "skipped": 1, "not_found": 1}
    assert result.max_jobs == bulk.MAX_JOBS
    assert [item.status for item in result.results[3:]] == ["running", "succeeded", None]
    assert {(await client.get(job_id)).status for job_id in parked} == {"cancelled"}
    assert (await client.wait(running.id, timeout=WITHIN_S)).status == "cancelled"

    again = await client.bulk_cancel(parked)  # idempotent: each job is acted on once
    assert again.ids("skipped") == parked


async def test_bulk_retry_runs_failed_jobs_again_and_skips_the_others(
    client: AsyncClient,
) -> None:
    failed = [job.id for job in await failed_jobs(client, 2)]
    queued = (await client.submit("noop", queue=parked_queue())).id

    result = await client.bulk_retry([*failed, queued])

    assert result.action == "retry"
    assert result.ids("retried") == failed and result.ids("skipped") == [queued]
    assert result.counts == {"retried": 2, "skipped": 1}
    for job_id in failed:
        again = await client.wait(job_id, timeout=WITHIN_S)
        assert (again.status, again.attempt) == ("failed", 2)


async def test_retry_failed_retries_the_oldest_of_a_filter_and_says_when_more_match(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = await failed_jobs(client, 3)
    # Failed too, and in the time range, but of another task: the filter leaves it.
    decoy = await client.submit("flaky", fail_times=5, max_attempts=1)
    assert (await client.wait(decoy.id, timeout=WITHIN_S)).status == "failed"
    since = failed[0].created_at
    assert since is not None
    # Retried jobs fail again at once; failing after this, they are not taken twice.
    failed_before = datetime.now(UTC)
    monkeypatch.setattr(bulk, "MAX_JOBS", 2)  # the server runs in this process

    async def retry_the_filter() -> BulkResult:
        return await client.retry_failed(
            task="fail", created_after=since, failed_before=failed_before
        )

    first = await retry_the_filter()
    assert first.ids("retried") == [job.id for job in failed[:2]]  # the oldest first
    assert (first.more, first.max_jobs) == (True, 2)
    for job in failed[:2]:
        assert (await client.wait(job.id, timeout=WITHIN_S)).attempt == 2
    # The first two have failed again, after `failed_before`: the repeat leaves them.
    second = await retry_the_filter()
    assert (second.ids("retried"), second.more) == ([failed[2].id], False)
    assert (await client.wait(failed[2].id, timeout=WITHIN_S)).attempt == 2
    third = await retry_the_filter()
    assert (third.results, third.more) == ([], False)
    left = await client.get(decoy.id)
    assert (left.status, left.attempt) == ("failed", 1)


# --- trends ---------------------------------------------------------------------------------


async def test_trends_count_the_jobs_that_ran(client: AsyncClient) -> None:
    jobs = [await client.submit("noop") for _ in range(2)]
    jobs.append(await client.submit("sleep_steps", steps=1, args={"delay_s": 0.001}))
    jobs.append(await client.submit("fail"))
    for job in jobs:
        await client.wait(job.id, timeout=WITHIN_S)
    since = jobs[0].created_at
    assert since is not None

    trends = await client.trends(created_after=since)

    assert trends.window_s == 60 * 60 and trends.until is not None
    assert trends.jobs_read == 4 and trends.covered_from is None
    overall = trends.overall
    assert (overall.jobs, overall.succeeded, overall.failed, overall.cancelled) == (4, 3, 1, 0)
    assert overall.run_p50_s is not None and overall.run_p50_s >= 0
    assert overall.wait_p95_s is not None
    assert sum(minute.succeeded + minute.failed for minute in trends.per_minute) == 4
    assert len(trends.per_minute) == 60  # one per minute of the window
    noop = trends.task("noop")
    assert noop is not None and (noop.jobs, noop.succeeded) == (2, 2)
    fail = trends.task("fail")
    assert fail is not None and (fail.jobs, fail.failed) == (1, 1)
    default = trends.queue("default")
    assert default is not None and default.jobs == 4
    assert trends.task("no_such_task") is None

    quarter = await client.trends("15m", task_prefix="no", created_after=since)
    assert quarter.window_s == 15 * 60 and len(quarter.per_minute) == 15
    assert (quarter.overall.jobs, [t.task for t in quarter.tasks]) == (2, ["noop"])


# --- errors ---------------------------------------------------------------------------------


async def test_bad_filters_arrive_as_typed_errors_naming_the_field(client: AsyncClient) -> None:
    with pytest.raises(errors.Invalid) as short:
        await client.list(task_contains="ab")
    assert (short.value.status, short.value.code, short.value.field) == (
        422,
        "invalid_query",
        "task_contains",
    )
    assert short.value.reason and "task_prefix" in short.value.reason
    with pytest.raises(errors.Invalid) as empty_range:
        now = datetime.now(UTC)
        await client.list(created_after=now, created_before=now)
    assert empty_range.value.field == "created_before"
    with pytest.raises(errors.Invalid) as trends_short:
        await client.trends(queue_contains="q")
    assert trends_short.value.field == "queue_contains"
    with pytest.raises(errors.Invalid) as window:
        await client.trends(cast(Any, "2h"))
    assert window.value.field == "window"

    with pytest.raises(errors.Invalid) as no_ids:
        await client.bulk_cancel([])
    assert (no_ids.value.code, no_ids.value.field) == ("invalid_bulk", "ids")
    with pytest.raises(errors.Invalid) as not_an_id:
        await client.bulk_retry([str(uuid.uuid4()), "nope"])
    assert not_an_id.value.field == "ids[1]"
    with pytest.raises(errors.Invalid) as not_failed:
        await client.retry_failed(status="queued")
    assert (not_failed.value.code, not_failed.value.field) == ("invalid_bulk", "filter.status")
    with pytest.raises(errors.Invalid) as bulk_short:
        await client.retry_failed(task_contains="fa")
    assert bulk_short.value.field == "task_contains"
    with pytest.raises(ValueError, match="failed_before must be timezone-aware"):
        await client.retry_failed(failed_before=datetime(2030, 1, 1))


# --- the sync client ------------------------------------------------------------------------


async def test_the_sync_client_filters_acts_in_bulk_and_reads_trends(
    server: ServerHandle, worker: WorkerHandle
) -> None:
    def session() -> None:
        with Client(server.url, timeout_s=WITHIN_S) as sync:
            queue = parked_queue("-sync")
            parked = [sync.submit("noop", queue=queue).id for _ in range(3)]
            sync.submit("sleep_steps", queue=queue)
            by_prefix = sync.list(queue_prefix=queue, task_contains="noo", limit=2)
            assert [job.id for job in by_prefix.jobs] == parked[:0:-1]
            walked = [job.id for job in sync.iter_jobs(queue=queue, task="noop", page_size=2)]
            assert walked == parked[::-1]

            cancelled = sync.bulk_cancel(parked[:2])
            assert cancelled.ids("cancelled") == parked[:2]
            assert sync.bulk_retry(parked[:1]).ids("retried") == parked[:1]

            failing = sync.submit("fail", message="sync")
            assert sync.wait(failing.id, timeout=WITHIN_S).status == "failed"
            assert failing.created_at is not None
            retried = sync.retry_failed(task="fail", created_after=failing.created_at)
            assert (retried.ids("retried"), retried.more) == ([failing.id], False)
            assert sync.wait(failing.id, timeout=WITHIN_S).attempt == 2

            trends = sync.trends("30m", created_after=failing.created_at)
            assert trends.window_s == 30 * 60
            assert (trends.overall.jobs, trends.overall.failed) == (1, 1)
            with pytest.raises(errors.Invalid) as short:
                sync.list(queue_contains="pa")
            assert short.value.field == "queue_contains"

    await asyncio.wait_for(asyncio.to_thread(session), WITHIN_S * 2)
