"""Scheduling against the real server and workers: when, where, how often and in what order
jobs run, and what a submission resolves to.

Covers delays, priorities, named queues, cron, idempotency keys, batches, per-task
concurrency limits, the result cache, worker hooks and progress details. Every wait is a
bounded loop on a condition (the HTTP API, the database or Redis), never a fixed sleep;
tasks that must hold a worker slot wait on a gate the test opens.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from tests.support import scheduling_tasks
from tests.support.api import get_job, history, submit, until
from tests.support.scheduling_tasks import (
    LIMITED_QUEUE,
    OTHER_QUEUE,
    gates,
    interrupted,
    lifecycle,
)
from tests.support.servers import ServerHandle, WorkerHandle, start_worker
from tidings.core import queue
from tidings.core.model import TERMINAL_STATUSES
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter
from tidings.worker import runtime
from tidings.worker.registry import SPEC_ATTRIBUTE, TaskSpec
from tidings.worker.scheduler import CronScheduler, schedule_key

WITHIN_S = 20.0
# No worker consumes this queue: jobs sent there stay queued.
PARKED = "parked"
RAN = ["queued", "started", "succeeded"]


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return replace(
        settings, tasks=("tidings.worker.tasks.examples", "tests.support.scheduling_tasks")
    )


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await queue.connect(settings.redis_url)
    yield redis
    await redis.aclose()


# --- helpers --------------------------------------------------------------------------------


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's JSON once it is terminal."""

    async def terminal() -> dict[str, Any] | None:
        job = await get_job(client, job_id)
        return job if job["status"] in TERMINAL_STATUSES else None

    job: dict[str, Any] = await until(terminal, WITHIN_S)
    return job


async def with_status(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        job = await get_job(client, job_id)
        return job if job["status"] == status else None

    job: dict[str, Any] = await until(reached, WITHIN_S)
    return job


async def kinds(client: httpx.AsyncClient, job_id: str) -> list[str]:
    return [event["kind"] for event in await history(client, job_id)]


async def all_succeeded(pool: asyncpg.Pool, ids: Sequence[str]) -> None:
    """Wait until every job in `ids` has succeeded."""
    uuids = [uuid.UUID(i) for i in ids]

    async def done() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'", uuids
        )
        return bool(count == len(uuids))

    await until(done, WITHIN_S)


async def job_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM jobs")
    return count


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def spec_of(fn: Any) -> TaskSpec:
    spec: TaskSpec = getattr(fn, SPEC_ATTRIBUTE)
    return spec


def moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def gate_name() -> str:
    return f"gate-{uuid.uuid4().hex[:8]}"


# --- delay_s and run_at ---------------------------------------------------------------------


async def test_a_delayed_job_stays_queued_until_its_time_then_runs(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "noop", delay_s=1.0)
    run_at = datetime.fromisoformat(job["run_at"])
    created_at = datetime.fromisoformat(job["created_at"])
    assert job["status"] == "queued"
    # The delay counts from the request, which the row's created_at follows.
    assert created_at - timedelta(seconds=1) < run_at <= created_at + timedelta(seconds=1)

    # Each snapshot reads status and the database clock in one statement: before run_at
    # the job must still be queued. The worker is idle and polling all the while.
    early_snapshots = 0

    async def due() -> bool:
        nonlocal early_snapshots
        row = await pool.fetchrow(
            "SELECT status, now() < run_at AS early FROM jobs WHERE id = $1",
            uuid.UUID(job["id"]),
        )
        assert row is not None
        if row["early"]:
            early_snapshots += 1
            assert row["status"] == "queued"
        return not row["early"]

    await until(due, WITHIN_S)
    assert early_snapshots > 0
    assert (await finished(client, job["id"]))["status"] == "succeeded"
    events = await history(client, job["id"])
    assert [event["kind"] for event in events] == RAN
    assert datetime.fromisoformat(events[1]["at"]) >= run_at


async def test_a_delayed_job_does_not_hold_up_a_due_job_submitted_after_it(
    client: httpx.AsyncClient,
) -> None:
    # Higher priority, but not due: priority orders due jobs only.
    delayed = await submit(client, "noop", delay_s=1.0, priority=10)
    due = await submit(client, "noop")
    assert (await finished(client, due["id"]))["status"] == "succeeded"
    due_started = moment((await get_job(client, due["id"]))["started_at"])
    later = await finished(client, delayed["id"])
    assert later["status"] == "succeeded"
    assert due_started < moment(delayed["run_at"]) <= moment(later["started_at"])


async def test_run_at_in_the_past_runs_now(client: httpx.AsyncClient) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    job = await submit(client, "noop", run_at=past.isoformat())
    assert datetime.fromisoformat(job["run_at"]) == past
    done = await finished(client, job["id"])
    assert done["status"] == "succeeded"
    assert await kinds(client, job["id"]) == RAN


async def test_run_at_with_another_offset_is_stored_in_utc(client: httpx.AsyncClient) -> None:
    job = await submit(client, "noop", run_at="2031-01-01T02:00:00+02:00", queue=PARKED)
    assert job["run_at"] == "2031-01-01T00:00:00+00:00"
    assert job["status"] == "queued"


@pytest.mark.parametrize(
    "run_at", ["tomorrow", "2031-13-01T00:00:00+00:00", "2031-01-01T00:00:00", "", 1_900_000_000]
)
async def test_an_unreadable_or_naive_run_at_is_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool, run_at: Any
) -> None:
    before = await job_count(pool)
    response = await client.post("/jobs", json={"task": "noop", "run_at": run_at})
    error = error_of(response, 422)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == "body.run_at"
    assert await job_count(pool) == before


async def test_run_at_and_delay_s_together_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs", json={"task": "noop", "delay_s": 1, "run_at": datetime.now(UTC).isoformat()}
    )
    error = error_of(response, 422)
    assert (error["code"], error["details"]["field"]) == ("invalid_request", "body.run_at")


# --- priority -------------------------------------------------------------------------------


async def test_a_higher_priority_job_submitted_last_runs_before_the_waiting_ones(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    one_slot = replace(settings, concurrency=1, queues=("prio",))
    async with start_worker(one_slot):
        name = gate_name()
        blocker = await submit(client, "gate", args={"name": name}, queue="prio")
        await with_status(client, blocker["id"], "running")
        # The only slot is busy: everything below waits, and is claimed once it frees.
        response = await client.post(
            "/jobs/batch", json={"jobs": [{"task": "noop", "queue": "prio"}] * 100}
        )
        assert response.status_code == 202, response.text
        normal = response.json()["ids"]
        urgent = await submit(client, "noop", queue="prio", priority=5)
        assert (await get_job(client, normal[-1]))["status"] == "queued"
        gates.open(name)
        await all_succeeded(pool, [blocker["id"], *normal, urgent["id"]])

    rows = await pool.fetch(
        "SELECT id, started_at FROM jobs WHERE id = ANY($1)", [uuid.UUID(i) for i in normal]
    )
    urgent_started = await pool.fetchval(
        "SELECT started_at FROM jobs WHERE id = $1", uuid.UUID(urgent["id"])
    )
    blocker_finished = await pool.fetchval(
        "SELECT finished_at FROM jobs WHERE id = $1", uuid.UUID(blocker["id"])
    )
    assert urgent_started >= blocker_finished
    assert sum(row["started_at"] > urgent_started for row in rows) == 100


# --- named queues ---------------------------------------------------------------------------


async def test_a_task_of_another_queue_runs_only_on_a_worker_of_that_queue(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    declared = await submit(client, "elsewhere")
    moved = await submit(client, "elsewhere", queue="default")
    sent_over = await submit(client, "noop", queue=OTHER_QUEUE)
    assert (declared["queue"], moved["queue"], sent_over["queue"]) == (
        OTHER_QUEUE,
        "default",
        OTHER_QUEUE,
    )
    # The default worker takes jobs submitted after the "other" ones, but not those.
    marker = await submit(client, "noop")
    assert (await finished(client, marker["id"]))["status"] == "succeeded"
    done = await finished(client, moved["id"])
    assert (done["status"], done["result"]) == ("succeeded", {"queue": "default"})
    for job in (declared, sent_over):
        assert (await get_job(client, job["id"]))["status"] == "queued"
        assert await kinds(client, job["id"]) == ["queued"]

    async with start_worker(replace(settings, queues=(OTHER_QUEUE,))):
        other_workers = await pool.fetch(
            "SELECT id FROM workers WHERE queues = $1::text[]", [OTHER_QUEUE]
        )
        assert len(other_workers) == 1
        other_id = other_workers[0]["id"]
        for job in (declared, sent_over):
            done = await finished(client, job["id"])
            assert done["status"] == "succeeded"
            assert done["worker_id"] == other_id
            assert await kinds(client, job["id"]) == RAN
        assert (await get_job(client, declared["id"]))["result"] == {"queue": OTHER_QUEUE}
    assert (await get_job(client, moved["id"]))["worker_id"] != other_id


async def test_a_worker_stops_an_attempt_it_no_longer_holds(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "held_open", args={"name": gate_name()})
    await with_status(client, job["id"], "running")
    # What a reaper does to the jobs of a worker it took for lost (this one was only slow):
    # the job goes back to the queue as a new attempt, held by no worker.
    await pool.execute(
        """UPDATE jobs SET status = 'queued', attempt = attempt + 1, worker_id = NULL,
                  run_at = now() + interval '1 hour'
           WHERE id = $1""",
        uuid.UUID(job["id"]),
    )

    async def stopped() -> bool:
        return (job["id"], 1) in interrupted

    await until(stopped, WITHIN_S)  # noticed at the worker's next heartbeat
    row = await pool.fetchrow(
        "SELECT status, attempt FROM jobs WHERE id = $1", uuid.UUID(job["id"])
    )
    assert (row["status"], row["attempt"]) == ("queued", 2)  # the old attempt wrote nothing


# --- cron -----------------------------------------------------------------------------------


class FakeTime:
    """A clock the test moves, and a sleep that returns only when the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.waits: list[float] = []
        self._sleepers: list[asyncio.Future[None]] = []
        self._changed = asyncio.Condition()

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        async with self._changed:
            self.waits.append(seconds)
            self._sleepers.append(wake)
            self._changed.notify_all()
        await wake

    async def until_asleep(self, schedulers: int = 1) -> None:
        """Wait until `schedulers` are asleep, i.e. each did everything due at `now`."""
        async with asyncio.timeout(WITHIN_S), self._changed:
            await self._changed.wait_for(lambda: len(self._sleepers) == schedulers)

    async def advance_to(self, moment: datetime, schedulers: int = 1) -> None:
        """Move the clock, wake every sleeper, and wait until they are all asleep again."""
        self.now = moment
        woken, self._sleepers = self._sleepers, []
        for wake in woken:
            wake.set_result(None)
        await self.until_asleep(schedulers)


def minutely(catch_up: bool = False) -> TaskSpec:
    """The `yearly` task (known to the workers), scheduled every minute."""
    return replace(spec_of(scheduling_tasks.yearly), cron="* * * * *", cron_catch_up=catch_up)


def at(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture(scope="module")
def submitter(pool: asyncpg.Pool, redis: ArqRedis, settings: Settings) -> Submitter:
    return Submitter(pool, redis, queue.Names(settings.namespace))


async def slots_on(pool: asyncpg.Pool, day: int) -> list[tuple[str, datetime]]:
    """(schedule_key, run_at) of the cron jobs of one day of March 2024, in slot order."""
    start = at(day, 0, 0)
    rows = await pool.fetch(
        """SELECT schedule_key, run_at FROM jobs
           WHERE task = 'yearly' AND run_at >= $1 AND run_at < $2 ORDER BY run_at""",
        start,
        start + timedelta(days=1),
    )
    return [(row["schedule_key"], row["run_at"]) for row in rows]


def keyed(spec: TaskSpec, *slots: datetime) -> list[tuple[str, datetime]]:
    return [(schedule_key(spec, slot), slot) for slot in slots]


async def test_cron_creates_exactly_one_job_per_slot_as_the_clock_advances(
    submitter: Submitter, pool: asyncpg.Pool
) -> None:
    spec = minutely()
    time = FakeTime(at(1, 12, 0, 30))
    scheduler = CronScheduler(submitter, [spec], clock=time.clock, sleep=time.sleep)
    await scheduler.start()
    try:
        await time.until_asleep()
        assert time.waits == [30.0]
        assert await slots_on(pool, 1) == []

        await time.advance_to(at(1, 12, 0, 59))
        assert await slots_on(pool, 1) == []
        await time.advance_to(at(1, 12, 1))
        assert await slots_on(pool, 1) == keyed(spec, at(1, 12, 1))
        await time.advance_to(at(1, 12, 1, 30))
        assert await slots_on(pool, 1) == keyed(spec, at(1, 12, 1))
        # The clock jumps three slots at once: each is created, once.
        await time.advance_to(at(1, 12, 4, 10))
        assert await slots_on(pool, 1) == keyed(
            spec, at(1, 12, 1), at(1, 12, 2), at(1, 12, 3), at(1, 12, 4)
        )
        assert time.waits == [30.0, 1.0, 60.0, 30.0, 50.0]
    finally:
        await scheduler.stop()


async def test_two_schedulers_firing_the_same_slot_create_one_job(
    submitter: Submitter, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    spec = minutely()
    time = FakeTime(at(2, 8, 0, 30))
    # Two schedulers as two workers have them: each with its own submitter.
    other = Submitter(pool, redis, queue.Names(settings.namespace))
    schedulers = [
        CronScheduler(s, [spec], clock=time.clock, sleep=time.sleep) for s in (submitter, other)
    ]
    for scheduler in schedulers:
        await scheduler.start()
    try:
        await time.until_asleep(2)
        await time.advance_to(at(2, 8, 1), schedulers=2)
        assert await slots_on(pool, 2) == keyed(spec, at(2, 8, 1))
        await time.advance_to(at(2, 8, 3), schedulers=2)
        assert await slots_on(pool, 2) == keyed(spec, at(2, 8, 1), at(2, 8, 2), at(2, 8, 3))
    finally:
        for scheduler in schedulers:
            await scheduler.stop()

    # Six concurrent attempts at one slot: exactly one creates it.
    slot = at(2, 9, 0)
    created = await asyncio.gather(*(s.fire(spec, slot) for s in schedulers for _ in range(3)))
    assert sorted(created) == [False] * 5 + [True]
    assert (await slots_on(pool, 2))[-1:] == keyed(spec, slot)


async def test_a_missed_slot_is_not_replayed_on_start_without_catch_up(
    submitter: Submitter, pool: asyncpg.Pool
) -> None:
    spec = minutely(catch_up=False)
    time = FakeTime(at(3, 9, 0, 30))  # the 09:00 slot passed while no scheduler ran
    scheduler = CronScheduler(submitter, [spec], clock=time.clock, sleep=time.sleep)
    await scheduler.start()
    try:
        await time.until_asleep()
        assert await slots_on(pool, 3) == []
        await time.advance_to(at(3, 9, 1))
        assert await slots_on(pool, 3) == keyed(spec, at(3, 9, 1))
    finally:
        await scheduler.stop()


async def test_catch_up_creates_the_latest_missed_slot_once(
    submitter: Submitter, pool: asyncpg.Pool
) -> None:
    spec = minutely(catch_up=True)
    # Slots 08:58, 08:59 and 09:00 passed while no scheduler ran.
    time = FakeTime(at(4, 9, 0, 30))
    first = CronScheduler(submitter, [spec], clock=time.clock, sleep=time.sleep)
    await first.start()
    # A second worker starting in the same minute catches up the same slot.
    second = CronScheduler(submitter, [spec], clock=time.clock, sleep=time.sleep)
    await second.start()
    try:
        await time.until_asleep(2)
        assert await slots_on(pool, 4) == keyed(spec, at(4, 9, 0))
        await time.advance_to(at(4, 9, 1), schedulers=2)
        assert await slots_on(pool, 4) == keyed(spec, at(4, 9, 0), at(4, 9, 1))
    finally:
        await first.stop()
        await second.stop()


class Refusing(Submitter):
    """A submitter that cannot create a job, as if Postgres were away, when `refuses` says."""

    def __init__(self, inner: Submitter, refuses: Callable[[JobRequest], bool]) -> None:
        self._inner = inner
        self.refuses = refuses

    async def submit(self, request: JobRequest) -> Any:
        if self.refuses(request):
            raise ConnectionRefusedError("Postgres is away")
        return await self._inner.submit(request)


async def test_a_slot_whose_job_cannot_be_created_is_tried_again_until_it_is(
    submitter: Submitter, pool: asyncpg.Pool
) -> None:
    spec = minutely()
    time = FakeTime(at(6, 7, 0, 30))
    refusals = iter([True, True])  # the first two attempts
    flaky = Refusing(submitter, lambda request: next(refusals, False))
    scheduler = CronScheduler(flaky, [spec], clock=time.clock, sleep=time.sleep)
    await scheduler.start()
    try:
        await time.until_asleep()
        await time.advance_to(at(6, 7, 1))  # the first attempt fails: back off 1 s
        await time.advance_to(at(6, 7, 1, 1))  # so does the second: back off 2 s
        assert await slots_on(pool, 6) == []
        await time.advance_to(at(6, 7, 1, 3))
        assert await slots_on(pool, 6) == keyed(spec, at(6, 7, 1))
        assert time.waits == [30.0, 1.0, 2.0, 57.0]
    finally:
        await scheduler.stop()


async def test_a_slot_still_failing_when_the_next_is_due_is_given_up_for_it(
    submitter: Submitter, pool: asyncpg.Pool
) -> None:
    spec = minutely()
    time = FakeTime(at(7, 7, 0, 30))
    flaky = Refusing(submitter, lambda request: True)
    scheduler = CronScheduler(flaky, [spec], clock=time.clock, sleep=time.sleep)
    await scheduler.start()
    try:
        await time.until_asleep()
        await time.advance_to(at(7, 7, 1))
        await time.advance_to(at(7, 7, 2))  # 07:01 is given up; 07:02 fails too
        flaky.refuses = lambda request: False  # Postgres is back
        await time.advance_to(at(7, 7, 2, 2))
        assert await slots_on(pool, 7) == keyed(spec, at(7, 7, 2))
    finally:
        await scheduler.stop()


async def test_a_task_whose_slots_keep_failing_does_not_hold_up_another(
    submitter: Submitter, pool: asyncpg.Pool
) -> None:
    spec = minutely()
    daily = replace(spec_of(scheduling_tasks.add), cron="0 0 * * *")
    time = FakeTime(at(8, 23, 59, 30))
    refusing = Refusing(submitter, lambda request: request.task == daily.name)
    scheduler = CronScheduler(refusing, [daily, spec], clock=time.clock, sleep=time.sleep)
    await scheduler.start()
    try:
        await time.until_asleep()
        await time.advance_to(at(9, 0, 0))  # both due: the daily one fails, retried in 1 s
        await time.advance_to(at(9, 0, 0, 1))
        await time.advance_to(at(9, 0, 1))
        await time.advance_to(at(9, 0, 2))
        assert await slots_on(pool, 9) == keyed(spec, at(9, 0, 0), at(9, 0, 1), at(9, 0, 2))
    finally:
        await scheduler.stop()


async def test_a_cron_slot_runs_as_an_ordinary_job(
    submitter: Submitter, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    spec = minutely()
    time = FakeTime(at(5, 10, 0, 30))
    scheduler = CronScheduler(submitter, [spec], clock=time.clock, sleep=time.sleep)
    await scheduler.start()
    try:
        await time.until_asleep()
        await time.advance_to(at(5, 10, 1))
    finally:
        await scheduler.stop()
    job_id = await pool.fetchval(
        "SELECT id FROM jobs WHERE schedule_key = $1", schedule_key(spec, at(5, 10, 1))
    )
    assert job_id is not None
    # The slot is in the past, so the job is due now and the module's worker runs it.
    job = await finished(client, str(job_id))
    assert job["status"] == "succeeded"
    assert (job["task"], job["queue"], job["attempt"]) == ("yearly", "default", 1)
    assert datetime.fromisoformat(job["run_at"]) == at(5, 10, 1)
    assert job["result"] == {"ran": "yearly"}
    events = await history(client, str(job_id))
    assert [(e["seq"], e["kind"]) for e in events] == [
        (1, "queued"),
        (2, "started"),
        (3, "succeeded"),
    ]
    assert events[-1]["data"]["result"] == {"ran": "yearly"}


# --- idempotency ----------------------------------------------------------------------------


async def keyed_jobs(pool: asyncpg.Pool, key: str) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT id, tenant FROM jobs WHERE idempotency_key = $1", key))


@pytest.mark.parametrize("via", ["body", "header"])
async def test_the_same_key_and_body_return_the_existing_job(
    client: httpx.AsyncClient, pool: asyncpg.Pool, via: str
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    body: dict[str, Any] = {"task": "add", "args": {"a": 1, "b": 1}, "cache": False}
    headers: dict[str, str] = {}
    if via == "body":
        body["idempotency_key"] = key
    else:
        headers["Idempotency-Key"] = key

    first = await client.post("/jobs", json=body, headers=headers)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    again = await client.post("/jobs", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job_id
    assert again.headers["location"].endswith(f"/jobs/{job_id}")

    await finished(client, job_id)
    after_it_ran = await client.post("/jobs", json=body, headers=headers)
    assert (after_it_ran.status_code, after_it_ran.json()["id"]) == (200, job_id)
    assert after_it_ran.json()["status"] == "succeeded"
    assert [row["id"] for row in await keyed_jobs(pool, key)] == [uuid.UUID(job_id)]
    assert await kinds(client, job_id) == RAN


async def test_a_key_in_the_header_and_in_the_body_is_one_key(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    body = {"task": "noop", "queue": PARKED}
    first = await client.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    again = await client.post("/jobs", json={**body, "idempotency_key": key})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert len(await keyed_jobs(pool, key)) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"args": {"a": 1, "b": 3}},
        {"task": "noop", "args": {}},
        {"queue": PARKED},
        {"priority": 1},
        {"max_attempts": 1},
        {"timeout_s": 5},
    ],
)
async def test_the_same_key_with_a_different_body_is_409(
    client: httpx.AsyncClient, pool: asyncpg.Pool, change: dict[str, Any]
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    body = {"task": "add", "args": {"a": 1, "b": 2}, "idempotency_key": key, "cache": False}
    first = await client.post("/jobs", json=body)
    assert first.status_code == 202, first.text
    error = error_of(await client.post("/jobs", json={**body, **change}), 409)
    assert error["code"] == "idempotency_conflict"
    assert error["details"] == {"idempotency_key": key, "job_id": first.json()["id"]}
    assert len(await keyed_jobs(pool, key)) == 1


async def test_concurrent_submissions_with_one_key_create_one_job(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    body = {"task": "noop", "idempotency_key": key}
    responses = await asyncio.gather(*(client.post("/jobs", json=body) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await keyed_jobs(pool, key)) == 1


async def test_idempotency_keys_belong_to_a_tenant(
    client: httpx.AsyncClient, pool: asyncpg.Pool, submitter: Submitter
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    # Another tenant's job under the same key (made with the core API: HTTP has one tenant).
    theirs = await submitter.submit(
        JobRequest(
            task="noop",
            args={},
            queue=PARKED,
            max_attempts=1,
            timeout_s=10,
            idempotency_key=key,
            tenant="acme",
        )
    )
    assert theirs is not None and theirs.created
    # The same key, with a different body, is no conflict for this tenant: a new job.
    ours = await submit(client, "add", args={"a": 5, "b": 5}, idempotency_key=key, cache=False)
    assert ours["id"] != str(theirs.row["id"])
    again = await client.post(
        "/jobs",
        json={"task": "add", "args": {"a": 5, "b": 5}, "idempotency_key": key, "cache": False},
    )
    assert (again.status_code, again.json()["id"]) == (200, ours["id"])
    assert {(str(r["id"]), r["tenant"]) for r in await keyed_jobs(pool, key)} == {
        (str(theirs.row["id"]), "acme"),
        (ours["id"], "default"),
    }
    assert (await client.get(f"/jobs/{theirs.row['id']}")).status_code == 404


# --- batch ----------------------------------------------------------------------------------


async def test_a_batch_of_1000_is_accepted_and_every_job_runs(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    jobs = [{"task": "add", "args": {"a": i, "b": 1}, "cache": False} for i in range(1000)]
    response = await client.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["count"] == 1000
    ids = body["ids"]
    assert len(set(ids)) == 1000
    await all_succeeded(pool, ids)
    rows = await pool.fetch(
        "SELECT id, args, result FROM jobs WHERE id = ANY($1)", [uuid.UUID(i) for i in ids]
    )
    by_id = {str(row["id"]): row for row in rows}
    # The ids come back in the order of the submitted jobs.
    for i, job_id in enumerate(ids):
        assert by_id[job_id]["args"] == {"a": i, "b": 1}
        assert by_id[job_id]["result"] == {"sum": i + 1}
    event_kinds = await pool.fetch(
        "SELECT kind, count(*) AS n FROM job_history WHERE job_id = ANY($1) GROUP BY kind",
        [uuid.UUID(i) for i in ids],
    )
    assert {row["kind"]: row["n"] for row in event_kinds} == dict.fromkeys(RAN, 1000)


async def test_a_batch_with_invalid_items_is_422_per_item_and_persists_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    before = await job_count(pool)
    jobs: list[Any] = [
        {"task": "noop"},
        {"task": "add", "args": {"a": 1, "b": 2}},
        {"task": "add", "args": {"a": "one", "b": 2}},
        {"task": "noop"},
        {"task": "no_such_task"},
        {"task": "noop", "priority": 99},
    ]
    error = error_of(await client.post("/jobs/batch", json={"jobs": jobs}), 422)
    assert error["code"] == "invalid_batch"
    items = [(e["index"], e["code"], e["field"]) for e in error["details"]["errors"]]
    assert items == [
        (2, "invalid_args", "args.a"),
        (4, "unknown_task", "body.task"),
        (5, "invalid_request", "body.priority"),
    ]
    assert await job_count(pool) == before


async def test_a_batch_that_fails_at_insert_persists_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    await submit(client, "noop", idempotency_key=key, queue=PARKED)
    before = await job_count(pool)
    jobs = [{"task": "noop", "queue": PARKED}] * 5 + [
        {"task": "noop", "queue": PARKED, "idempotency_key": key}
    ]
    error = error_of(await client.post("/jobs/batch", json={"jobs": jobs}), 409)
    assert error["code"] == "idempotency_conflict"
    assert await job_count(pool) == before


@pytest.mark.parametrize("size", [0, 10_001])
async def test_an_empty_or_oversized_batch_is_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool, size: int
) -> None:
    before = await job_count(pool)
    response = await client.post("/jobs/batch", json={"jobs": [{"task": "noop"}] * size})
    error = error_of(response, 422)
    assert (error["code"], error["details"]["field"]) == ("invalid_request", "body.jobs")
    assert await job_count(pool) == before


# --- max_concurrency ------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def limited_workers(settings: Settings, server: ServerHandle) -> AsyncIterator[None]:
    """Two more workers, the only consumers of the queue of the limited tasks."""
    limited = replace(settings, queues=(LIMITED_QUEUE,))
    async with start_worker(limited), start_worker(limited):
        yield


async def pending_tokens(redis: ArqRedis, settings: Settings, ids: Sequence[str]) -> int:
    """How many of the jobs' original ARQ tokens are still on the limited queue.

    ARQ removes a token from its queue when the delivery finishes: a token whose claim
    was refused by the limit is gone at once, one that claimed a job stays while it runs.
    """
    members = await redis.zrange(queue.Names(settings.namespace).queue(LIMITED_QUEUE), 0, -1)
    originals = {queue.arq_job_id(job_id, 1).encode() for job_id in ids}
    return len(originals.intersection(members))


async def intervals(pool: asyncpg.Pool, ids: Sequence[str]) -> list[tuple[datetime, datetime]]:
    """(start, end) of each job's task body, from its `start` and `end` log events."""
    rows = await pool.fetch(
        "SELECT job_id, message, at FROM job_history WHERE job_id = ANY($1) AND kind = 'log'",
        [uuid.UUID(i) for i in ids],
    )
    marks: dict[uuid.UUID, dict[str, datetime]] = {}
    for row in rows:
        marks.setdefault(row["job_id"], {})[row["message"]] = row["at"]
    assert len(marks) == len(ids)
    return [(m["start"], m["end"]) for m in marks.values()]


def most_overlapping(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans running at one instant (an end and a start at once do not overlap)."""
    points = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize(
    ("task", "limit", "count"), [("one_at_a_time", 1, 5), ("two_at_a_time", 2, 7)]
)
async def test_a_concurrency_limit_holds_across_two_workers(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    settings: Settings,
    limited_workers: None,
    task: str,
    limit: int,
    count: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A freed slot must go to a waiting job through the wake token the finishing worker
    # enqueues: with refused tokens retried only after an hour (and the reconciler
    # restoring none, as every waiting job keeps a token), nothing else could start one
    # within the test's wait.
    monkeypatch.setattr(runtime, "WAITING_TOKEN_DELAY_S", 3600.0)
    name = gate_name()
    job = {"task": task, "args": {"gate": name, "hold_s": 0.02}}
    response = await client.post("/jobs/batch", json={"jobs": [job] * count})
    assert response.status_code == 202, response.text
    ids: list[str] = response.json()["ids"]

    async def running() -> list[str]:
        rows = await pool.fetch(
            "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'running'",
            [uuid.UUID(i) for i in ids],
        )
        return [str(row["id"]) for row in rows] if len(rows) == limit else []

    holding = await until(running, WITHIN_S)
    # Every other token has been delivered, and its claim refused by the limit.
    await until(lambda: _equals(pending_tokens(redis, settings, ids), limit), WITHIN_S)
    waiting = [i for i in ids if i not in holding]
    rows = await pool.fetch(
        "SELECT status, attempt, seq FROM jobs WHERE id = ANY($1)", [uuid.UUID(i) for i in waiting]
    )
    assert [(r["status"], r["attempt"], r["seq"]) for r in rows] == [("queued", 1, 1)] * len(
        waiting
    )

    gates.open(name)
    await all_succeeded(pool, ids)
    for job_id in ids:
        assert await kinds(client, job_id) == ["queued", "started", "log", "log", "succeeded"]
    spans = await intervals(pool, ids)
    assert most_overlapping(spans) == limit
    limited = await pool.fetch("SELECT id FROM workers WHERE queues = $1::text[]", [LIMITED_QUEUE])
    assert len(limited) == 2
    workers = {
        row["worker_id"]
        for row in await pool.fetch(
            "SELECT worker_id FROM jobs WHERE id = ANY($1)", [uuid.UUID(i) for i in ids]
        )
    }
    assert workers <= {row["id"] for row in limited}


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# --- result cache ---------------------------------------------------------------------------


async def test_an_identical_submission_is_served_from_the_result_cache(
    client: httpx.AsyncClient,
) -> None:
    first = await submit(client, "add", args={"a": 20, "b": 22})
    assert first["status"] == "queued"
    assert (await finished(client, first["id"]))["result"] == {"sum": 42}

    # The same args in another key order: a new job, born succeeded.
    hit = await submit(client, "add", args={"b": 22, "a": 20})
    assert hit["id"] != first["id"]
    assert (hit["status"], hit["result"], hit["cached_from"]) == (
        "succeeded",
        {"sum": 42},
        first["id"],
    )
    events = await history(client, hit["id"])
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "queued"), (2, "succeeded")]
    assert events[1]["data"] == {"result": {"sum": 42}, "cached_from": first["id"]}
    # As stored, it reads back the same (but for its stream token, which is issued anew).
    read_back = await get_job(client, hit["id"])
    assert {**read_back, "links": None} == {**hit, "links": None}

    # A later hit still names the job that computed the result, not an earlier hit.
    again = await submit(client, "add", args={"a": 20, "b": 22})
    assert (again["status"], again["cached_from"]) == ("succeeded", first["id"])


async def test_a_cache_hit_does_not_extend_the_ttl_of_the_result(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ttl_s = spec_of(scheduling_tasks.add).cache_ttl_s
    assert ttl_s == 3600
    first = await submit(client, "add", args={"a": 31, "b": -1})
    assert first["status"] == "queued"
    await finished(client, first["id"])
    hit = await submit(client, "add", args={"a": 31, "b": -1})
    assert hit["cached_from"] == first["id"]
    # The computing run falls out of the TTL (its clock moved back); the hit just served
    # is recent, but it computed nothing: the next submission must run the task again.
    await pool.execute(
        "UPDATE jobs SET finished_at = finished_at - make_interval(secs => $2) WHERE id = $1",
        uuid.UUID(first["id"]),
        ttl_s + 1,
    )
    fresh = await submit(client, "add", args={"a": 31, "b": -1})
    assert (fresh["status"], fresh["cached_from"]) == ("queued", None)
    assert (await finished(client, fresh["id"]))["result"] == {"sum": 30}
    assert await kinds(client, fresh["id"]) == RAN


async def test_cache_false_runs_the_task_again(client: httpx.AsyncClient) -> None:
    first = await submit(client, "add", args={"a": 7, "b": 8})
    await finished(client, first["id"])
    rerun = await submit(client, "add", args={"a": 7, "b": 8}, cache=False)
    assert (rerun["status"], rerun["cached_from"]) == ("queued", None)
    done = await finished(client, rerun["id"])
    assert (done["status"], done["result"], done["cached_from"]) == ("succeeded", {"sum": 15}, None)
    assert await kinds(client, rerun["id"]) == RAN


async def test_different_args_miss_the_cache(client: httpx.AsyncClient) -> None:
    first = await submit(client, "add", args={"a": 100, "b": 1})
    await finished(client, first["id"])
    other = await submit(client, "add", args={"a": 100, "b": 2})
    assert (other["status"], other["cached_from"]) == ("queued", None)
    done = await finished(client, other["id"])
    assert (done["result"], done["cached_from"]) == ({"sum": 102}, None)
    assert await kinds(client, other["id"]) == RAN


# --- hooks ----------------------------------------------------------------------------------


async def test_startup_hooks_give_tasks_resources_and_shutdown_hooks_run_at_stop(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    started, stopped = len(lifecycle.started), len(lifecycle.stopped)
    async with start_worker(replace(settings, queues=("hooks",))):
        assert len(lifecycle.started) == started + 1
        resources = lifecycle.started[-1]
        greeter = resources["greeter"]
        job = await submit(client, "greet", args={"name": "ada"}, queue="hooks")
        done = await finished(client, job["id"])
        assert done["status"] == "succeeded"
        assert done["result"] == {"greeting": "hello, ada", "session": greeter.session}
        assert len(lifecycle.stopped) == stopped
        assert not greeter.closed
    assert len(lifecycle.stopped) == stopped + 1
    assert lifecycle.stopped[-1] is resources
    assert greeter.closed


# --- progress details and ETA ---------------------------------------------------------------


async def test_log_and_progress_events_carry_their_data_and_a_running_job_has_an_eta(
    client: httpx.AsyncClient,
) -> None:
    name = gate_name()
    job = await submit(client, "report_progress", args={"gate": name})

    async def halfway() -> dict[str, Any] | None:
        current = await get_job(client, job["id"])
        return current if current["progress"]["current"] == 1 else None

    running = await until(halfway, WITHIN_S)
    gates.open(name)
    assert running["status"] == "running"
    progress = running["progress"]
    assert (progress["current"], progress["total"], progress["fraction"]) == (1, 4, 0.25)
    assert progress["message"] == "downloading"
    assert isinstance(progress["eta_s"], float) and progress["eta_s"] > 0

    assert (await finished(client, job["id"]))["status"] == "succeeded"
    events = await history(client, job["id"])
    shape = [(e["kind"], e["message"], e["current"], e["total"], e["data"]) for e in events[2:-1]]
    assert [e["kind"] for e in events[:2]] == ["queued", "started"]
    assert shape == [
        ("log", "fetched page", None, None, {"page": 1, "url": "https://example.test/1"}),
        ("progress", "downloading", 1, 4, {"phase": "download", "bytes": 1024}),
        ("log", "plain note", None, None, None),
        ("progress", "done", 4, 4, {"phase": "finish"}),
    ]
    assert (events[-1]["kind"], events[-1]["data"]["result"]) == ("succeeded", {"ok": True})
    assert (await get_job(client, job["id"]))["progress"]["eta_s"] is None


async def test_a_waiting_job_eta_comes_from_recent_runs_and_its_place_in_the_queue(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    async with start_worker(replace(settings, concurrency=1, queues=("eta",))):
        name = gate_name()
        blocker = await submit(client, "gate", args={"name": name}, queue="eta")
        await with_status(client, blocker["id"], "running")
        waiting = [await submit(client, "measured", queue="eta") for _ in range(3)]
        for job in waiting:
            current = await get_job(client, job["id"])
            assert current["status"] == "queued"
            assert current["progress"]["eta_s"] is None  # no run of `measured` yet

        # One run elsewhere gives the task a history.
        sample = await submit(client, "measured", args={"hold_s": 0.05})
        assert (await finished(client, sample["id"]))["status"] == "succeeded"
        row = await pool.fetchrow(
            "SELECT finished_at - started_at AS took FROM jobs WHERE id = $1",
            uuid.UUID(sample["id"]),
        )
        assert row is not None
        run_s = row["took"].total_seconds()
        assert run_s >= 0.05

        # One slot on the queue: a job waits for those ahead of it, then runs itself.
        for ahead, job in enumerate(waiting):
            eta_s = (await get_job(client, job["id"]))["progress"]["eta_s"]
            assert eta_s == pytest.approx((ahead + 1) * run_s, abs=0.002)
        gates.open(name)
        await all_succeeded(pool, [blocker["id"], *(job["id"] for job in waiting)])
