"""The hub's fan-out and bounded queues, and replay_then_follow when a queue overflows.

The first tests drive `Hub.dispatch` by hand and touch no Redis; the middle ones add real
Postgres, committing a job's events in place of a worker. The last ones use the real
Postgres, Redis and worker, with subscription queues of one event, so that a stream that
is not read for a moment overflows and must catch up from Postgres.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support.servers import ServerHandle, WorkerHandle, start_server
from tests.support.sse import job_events
from tidings.core import queue
from tidings.core.db import events
from tidings.core.events import event_json
from tidings.core.model import TERMINAL_STATUSES
from tidings.core.settings import Settings
from tidings.server.streams.follow import replay_then_follow
from tidings.server.streams.hub import Hub, Notice, Subscription
from tidings.server.streams.keepalive import KeepAlive

WITHIN_S = 10.0
# Never connected: `start()` is not called, so these hubs touch no Redis.
UNUSED_REDIS = "redis://127.0.0.1:1/0"
# No worker consumes this queue; tests that play the worker's part use it.
PARKED = "parked"


def event(job_id: str, seq: int, kind: str = "progress") -> dict[str, Any]:
    return {"job_id": job_id, "seq": seq, "kind": kind}


def drained(subscription: Subscription) -> list[dict[str, Any]]:
    """What is queued on `subscription` now, without waiting."""
    events = list(subscription.events)
    subscription.events.clear()
    return events


async def next_within(subscription: Subscription) -> dict[str, Any] | Notice:
    async with asyncio.timeout(WITHIN_S):
        return await subscription.next()


async def parked(subscription: Subscription, waiter: asyncio.Task[Any]) -> None:
    """Let `waiter` run until it is blocked in `next`; fails if it returned instead."""
    async with asyncio.timeout(WITHIN_S):
        while not subscription.waiting:
            assert not waiter.done(), f"returned {waiter.result()!r} instead of waiting"
            await asyncio.sleep(0)
    assert not waiter.done()


# --- Subscription and Hub without Redis -----------------------------------------------------


async def test_dispatch_delivers_by_job_id_and_to_every_all_jobs_subscription() -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=8)
    with (
        hub.subscribe("a") as a1,
        hub.subscribe("a") as a2,
        hub.subscribe("b") as b,
        hub.subscribe(None) as every1,
        hub.subscribe(None) as every2,
    ):
        assert hub.subscriptions == 5
        hub.dispatch(event("a", 1))
        hub.dispatch(event("b", 1))
        hub.dispatch(event("c", 1))
        hub.dispatch(event("a", 2))
        assert drained(a1) == drained(a2) == [event("a", 1), event("a", 2)]
        assert drained(b) == [event("b", 1)]
        expected = [event("a", 1), event("b", 1), event("c", 1), event("a", 2)]
        assert drained(every1) == drained(every2) == expected


async def test_an_event_without_a_job_id_reaches_only_all_jobs_subscriptions() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with hub.subscribe("a") as one, hub.subscribe(None) as every:
        hub.dispatch({"kind": "odd"})
        assert drained(one) == []
        assert drained(every) == [{"kind": "odd"}]


async def test_leaving_the_block_unsubscribes() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with hub.subscribe("a") as kept:
        with hub.subscribe("a") as gone, hub.subscribe(None) as gone_too:
            assert hub.subscriptions == 3
        assert hub.subscriptions == 1
        hub.dispatch(event("a", 1))
        assert drained(kept) == [event("a", 1)]
        assert drained(gone) == drained(gone_too) == []
    assert hub.subscriptions == 0


async def test_a_stream_that_raises_is_unsubscribed_too() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with pytest.raises(RuntimeError), hub.subscribe("a"):
        raise RuntimeError("the stream broke")
    assert hub.subscriptions == 0


async def test_next_returns_queued_events_in_order() -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=4)
    with hub.subscribe("a") as subscription:
        for seq in (1, 2, 3):
            hub.dispatch(event("a", seq))
        assert [await next_within(subscription) for _ in range(3)] == [
            event("a", 1),
            event("a", 2),
            event("a", 3),
        ]


async def test_next_waits_until_an_event_is_delivered() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with hub.subscribe("a") as subscription:
        waiter = asyncio.create_task(next_within(subscription))
        await parked(subscription, waiter)
        hub.dispatch(event("a", 1))
        assert await waiter == event("a", 1)


async def test_overflow_marks_resync_then_next_returns_resync_then_continues() -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=2)
    with hub.subscribe("a") as subscription:
        for seq in (1, 2, 3, 4):  # two fit; the third and fourth overflow
            hub.dispatch(event("a", seq))
        assert subscription.needs_resync
        # RESYNC means "re-read Postgres": the queued events are dropped, not handed out,
        # since the re-read covers them and anything that overflowed.
        assert await next_within(subscription) is Notice.RESYNC
        assert not subscription.needs_resync
        assert not subscription.events
        hub.dispatch(event("a", 5))
        assert await next_within(subscription) == event("a", 5)
        for seq in (6, 7, 8):
            hub.dispatch(event("a", seq))
        assert await next_within(subscription) is Notice.RESYNC
        hub.dispatch(event("a", 9))
        assert await next_within(subscription) == event("a", 9)


async def test_an_overflow_wakes_a_waiting_stream_with_resync() -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=1)
    with hub.subscribe("a") as subscription:
        waiter = asyncio.create_task(next_within(subscription))
        await parked(subscription, waiter)
        hub.dispatch(event("a", 1))
        hub.dispatch(event("a", 2))  # overflows before the waiter has run again
        assert await waiter is Notice.RESYNC


async def test_mark_resync_wakes_a_waiting_stream() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with hub.subscribe("a") as subscription:
        waiter = asyncio.create_task(next_within(subscription))
        await parked(subscription, waiter)
        subscription.mark_resync()
        assert await waiter is Notice.RESYNC


async def test_one_full_subscription_does_not_hold_back_the_others() -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=1)
    with hub.subscribe("a") as slow, hub.subscribe("a") as fast:
        hub.dispatch(event("a", 1))
        assert await next_within(fast) == event("a", 1)
        hub.dispatch(event("a", 2))
        assert slow.needs_resync and not fast.needs_resync
        assert await next_within(fast) == event("a", 2)
        assert await next_within(slow) is Notice.RESYNC


async def test_a_keep_alive_comes_after_the_queued_events() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with hub.subscribe("a") as one, hub.subscribe(None) as every:
        hub.dispatch(event("a", 1))
        hub.keep_alive()
        assert [await next_within(one), await next_within(one)] == [event("a", 1), Notice.KEEPALIVE]
        assert [await next_within(every), await next_within(every)] == [
            event("a", 1),
            Notice.KEEPALIVE,
        ]
        waiter = asyncio.create_task(next_within(one))
        await parked(one, waiter)  # one keep-alive asked, one given: nothing is left
        hub.keep_alive()
        assert await waiter is Notice.KEEPALIVE


async def test_closing_the_streams_ends_waiting_ones_and_any_opened_after() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    with hub.subscribe("a") as waiting:
        waiter = asyncio.create_task(next_within(waiting))
        await parked(waiting, waiter)
        hub.close_streams()
        assert await waiter is Notice.CLOSED
        # Closed wins over anything still queued: the server is going away.
        hub.dispatch(event("a", 1))
        assert await next_within(waiting) is Notice.CLOSED
        with hub.subscribe("b") as late:
            assert await next_within(late) is Notice.CLOSED
    assert hub.subscriptions == 0


async def test_the_keepalive_timer_asks_every_stream_once_a_period() -> None:
    hub = Hub(UNUSED_REDIS, "unused")
    ticks: asyncio.Queue[None] = asyncio.Queue()
    periods: list[float] = []

    async def fake_sleep(period_s: float) -> None:
        periods.append(period_s)
        await ticks.get()

    keepalive = KeepAlive(hub, 15.0, sleep=fake_sleep)
    with hub.subscribe("a") as one, hub.subscribe(None) as every:
        keepalive.start()
        try:
            for _ in range(2):
                ticks.put_nowait(None)
                assert await next_within(one) is Notice.KEEPALIVE
                assert await next_within(every) is Notice.KEEPALIVE
        finally:
            await keepalive.stop()
    assert periods[:2] == [15.0, 15.0]


# --- replay_then_follow against Postgres, playing the worker by hand --------------------------


class RecordingHub(Hub):
    """A hub that keeps each subscription it hands out, so a test can look at them."""

    def __init__(self, redis_url: str, channel: str, *, queue_size: int) -> None:
        super().__init__(redis_url, channel, queue_size=queue_size)
        self.handed_out: list[Subscription] = []

    def subscribe(self, job_id: str | None) -> Subscription:
        subscription = super().subscribe(job_id)
        self.handed_out.append(subscription)
        return subscription


# Written here in plain SQL against the documented tables rather than through the worker's
# statements: these tests stand in for the worker, and only the rows they leave matter.
INSERT_QUEUED_JOB = """
WITH job AS (
    INSERT INTO jobs (id, task, queue, seq) VALUES ($1, 'noop', $2, 1) RETURNING *
)
INSERT INTO job_events (job_id, seq, kind, status, attempt)
SELECT id, seq, 'queued', status, attempt FROM job
"""

APPEND_EVENT = """
WITH job AS (
    UPDATE jobs SET seq = seq + 1, status = $3, updated_at = now() WHERE id = $1 RETURNING *
)
, event AS (
    INSERT INTO job_events (job_id, seq, kind, status, attempt)
    SELECT id, seq, $2, status, attempt FROM job
    RETURNING *
)
SELECT event.*, job.task AS job_task, job.queue AS job_queue, job.tenant AS job_tenant,
       job.batch_id AS job_batch
FROM event, job
"""


async def parked_job(pool: asyncpg.Pool) -> uuid.UUID:
    """A queued job (its event seq 1) on a queue no worker reads."""
    job_id = uuid.uuid4()
    await pool.execute(INSERT_QUEUED_JOB, job_id, PARKED)
    return job_id


async def commit(pool: asyncpg.Pool, job_id: uuid.UUID, kind: str) -> dict[str, Any]:
    """Commit the job's next event, as a worker would; returns it as it would be published."""
    status = {"started": "running", "progress": "running"}.get(kind, kind)
    row = await pool.fetchrow(APPEND_EVENT, job_id, kind, status)
    assert row is not None
    return event_json(row)


async def followed(
    pool: asyncpg.Pool, hub: Hub, job_id: uuid.UUID, after: int = 0
) -> AsyncIterator[tuple[int, str]]:
    """(seq, kind) of each event `replay_then_follow` yields, each within WITHIN_S."""
    with hub.subscribe(str(job_id)) as subscription:
        async with aclosing(replay_then_follow(pool, subscription, job_id, after)) as events:
            while True:
                async with asyncio.timeout(WITHIN_S):
                    try:
                        item = await anext(events)
                    except StopAsyncIteration:
                        return
                assert isinstance(item, dict), item  # no keep-alive timer runs here
                yield item["seq"], item["kind"]


async def test_a_hole_in_the_live_events_is_filled_from_postgres_and_late_ones_skipped(
    pool: asyncpg.Pool,
) -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=8)
    job_id = await parked_job(pool)
    async with aclosing(followed(pool, hub, job_id)) as stream:
        assert await anext(stream) == (1, "queued")
        started = await commit(pool, job_id, "started")
        one = await commit(pool, job_id, "progress")
        two = await commit(pool, job_id, "progress")
        assert (started["seq"], one["seq"], two["seq"]) == (2, 3, 4)
        hub.dispatch(two)  # the publishes of 2 and 3 were lost
        assert [await anext(stream) for _ in range(3)] == [
            (2, "started"),
            (3, "progress"),
            (4, "progress"),
        ]
        hub.dispatch(one)  # late and already sent: skipped
        hub.dispatch(started)
        hub.dispatch(await commit(pool, job_id, "succeeded"))
        assert await anext(stream) == (5, "succeeded")
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
    assert hub.subscriptions == 0


async def test_in_order_live_events_reach_the_stream_without_reading_postgres_again(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres is read for the replay and for holes only, never per live event (a spy
    counts the history reads; the reads themselves are real)."""
    reads: list[int] = []
    real = events.events_after

    async def counted(db: Any, *, job_id: uuid.UUID, after: int) -> Any:
        reads.append(after)
        return await real(db, job_id=job_id, after=after)

    monkeypatch.setattr(events, "events_after", counted)
    hub = Hub(UNUSED_REDIS, "unused", queue_size=8)
    job_id = await parked_job(pool)
    async with aclosing(followed(pool, hub, job_id)) as stream:
        assert await anext(stream) == (1, "queued")
        for kind in ("started", "progress", "progress", "succeeded"):
            event = await commit(pool, job_id, kind)
            hub.dispatch(event)
            hub.dispatch(event)  # published twice: the copy is skipped, not looked up
            assert await anext(stream) == (event["seq"], kind)
    assert reads == [0]  # the replay, and nothing since


async def test_replay_then_follow_passes_keep_alives_on_and_ends_when_the_hub_closes(
    pool: asyncpg.Pool,
) -> None:
    hub = Hub(UNUSED_REDIS, "unused", queue_size=8)
    job_id = await parked_job(pool)
    with hub.subscribe(str(job_id)) as subscription:
        async with aclosing(replay_then_follow(pool, subscription, job_id, 0)) as events:
            first = await anext(events)
            assert isinstance(first, dict) and first["seq"] == 1
            hub.keep_alive()
            assert await anext(events) is Notice.KEEPALIVE
            hub.close_streams()
            with pytest.raises(StopAsyncIteration):
                await anext(events)
    assert hub.subscriptions == 0


async def test_an_overflowed_subscription_catches_up_from_postgres_once_each(
    pool: asyncpg.Pool,
) -> None:
    hub = RecordingHub(UNUSED_REDIS, "unused", queue_size=1)
    job_id = await parked_job(pool)
    async with aclosing(followed(pool, hub, job_id)) as stream:
        assert await anext(stream) == (1, "queued")
        [subscription] = hub.handed_out
        hub.dispatch(await commit(pool, job_id, "started"))
        for _ in range(3):
            hub.dispatch(await commit(pool, job_id, "progress"))
        assert subscription.needs_resync
        assert [await anext(stream) for _ in range(4)] == [
            (2, "started"),
            (3, "progress"),
            (4, "progress"),
            (5, "progress"),
        ]
        hub.dispatch(await commit(pool, job_id, "succeeded"))
        assert [seq async for seq in stream] == [(6, "succeeded")]


# --- replay_then_follow with the real worker and Redis --------------------------------------


@pytest.fixture(scope="module")
async def one_slot_server(settings: Settings) -> AsyncIterator[ServerHandle]:
    """A second server whose hub gives each stream a queue of a single event."""
    async with start_server(replace(settings, stream_queue_size=1)) as handle:
        yield handle


@pytest.fixture(scope="module")
async def client(
    one_slot_server: ServerHandle, worker: WorkerHandle
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=one_slot_server.url, timeout=WITHIN_S) as client:
        yield client


async def submit_sleep_steps(client: httpx.AsyncClient, steps: int, delay_s: float) -> str:
    submission = {"task": "sleep_steps", "args": {"steps": steps, "delay_s": delay_s}}
    response = await client.post("/jobs", json=submission)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait, at most WITHIN_S, until the (async) `check()` is true."""
    async with asyncio.timeout(WITHIN_S):
        # The conditions live in Postgres and in the hub, neither of which signals here.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def sleep_steps_seqs(steps: int) -> list[tuple[int, str]]:
    kinds = ["queued", "started", *["progress"] * steps, "succeeded"]
    return list(enumerate(kinds, start=1))


async def test_a_stream_left_unread_overflows_and_still_yields_every_event_once_in_order(
    settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    names = queue.Names(settings.namespace)
    hub = RecordingHub(settings.redis_url, names.events_channel, queue_size=1)
    hub.start()
    try:
        async with asyncio.timeout(WITHIN_S):
            await hub.connected.wait()
        steps = 20
        job_id = uuid.UUID(await submit_sleep_steps(client, steps=steps, delay_s=0.005))
        async with aclosing(followed(pool, hub, job_id)) as stream:
            first = await anext(stream)
            [subscription] = hub.handed_out

            async def finished_and_overflowed() -> bool:
                status = await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)
                return status in TERMINAL_STATUSES and subscription.needs_resync

            # Not reading while the job runs: its live events overflow the one-slot queue.
            await until(finished_and_overflowed)
            rest = [item async for item in stream]
        assert [first, *rest] == sleep_steps_seqs(steps)
        assert hub.subscriptions == 0
    finally:
        await hub.stop()


async def test_streams_from_a_server_with_one_slot_queues_get_every_event_once(
    client: httpx.AsyncClient,
) -> None:
    # Several readers of a job whose progress outruns them: each stream's queue holds one
    # event, so bursts overflow it and the stream catches up from Postgres.
    steps = 50
    job_id = await submit_sleep_steps(client, steps=steps, delay_s=0.001)

    async def read() -> list[tuple[int, str]]:
        async with (
            asyncio.timeout(WITHIN_S),
            aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source,
        ):
            return [(seq, kind) async for seq, kind, _ in job_events(source)]

    readers = await asyncio.gather(*(read() for _ in range(4)))
    assert readers == [sleep_steps_seqs(steps)] * 4
