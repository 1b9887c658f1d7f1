"""The client's batch API against the real server and worker: submitting a batch whose jobs
wait for each other, following its stream to the end (also across a cut connection), and
cancelling, retrying, listing and reading batches and their members.

The sync `Client` runs in a thread (`asyncio.to_thread`), since the server it talks to runs
in this test's event loop. Waits are on streams, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support import typed_client
from tests.support.proxy import TcpProxy, proxy_to
from tests.support.servers import ServerHandle, WorkerHandle
from tidings.client import (
    AsyncClient,
    BatchFinished,
    BatchJobEvent,
    BatchProgressEvent,
    Client,
    JobSpec,
    ReconnectPolicy,
    errors,
)
from tidings.client.batch_models import BatchEvent

WITHIN_S = 20.0
FAST = ReconnectPolicy(attempts=4, first_delay_s=0.01, max_delay_s=0.05)


def parked_queue() -> str:
    """A queue no worker consumes: jobs sent there stay queued."""
    return f"parked-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, timeout_s=WITHIN_S, reconnect=FAST) as client:
        yield client


@pytest.fixture
async def proxy(server: ServerHandle) -> AsyncIterator[TcpProxy]:
    async with proxy_to(server.url) as proxy:
        yield proxy


async def follow(client: AsyncClient, batch_id: str, after: int | None = None) -> list[BatchEvent]:
    async with asyncio.timeout(WITHIN_S):
        return [event async for event in client.stream_batch(batch_id, last_event_id=after)]


def transitions(events: list[BatchEvent]) -> list[BatchJobEvent]:
    return [event for event in events if isinstance(event, BatchJobEvent)]


def fan_in() -> list[JobSpec]:
    """Two jobs, and a third that waits for both."""
    steps = {"steps": 3, "delay_s": 0.02}
    return [
        JobSpec("sleep_steps", steps, ref="left"),
        JobSpec("sleep_steps", steps, ref="right"),
        JobSpec("noop", depends_on=["left", "right"]),
    ]


async def test_a_batch_streams_every_member_transition_once_in_order_to_its_end(
    client: AsyncClient,
) -> None:
    batch = await client.submit_batch(fan_in(), name="fan-in", metadata={"run": 7})
    assert (batch.name, batch.metadata, batch.total, len(batch.job_ids)) == (
        "fan-in",
        {"run": 7},
        3,
        3,
    )
    left, right, last = batch.job_ids
    waiting = await client.get(last)
    assert waiting.batch_id == batch.id and waiting.depends_on == [left, right]

    events = await follow(client, batch.id)

    moves = transitions(events)
    assert [event.seq for event in moves] == list(range(1, len(moves) + 1))
    assert all(event.batch_id == batch.id for event in events)
    assert isinstance(events[-1], BatchFinished)
    assert (events[-1].counts.succeeded, events[-1].total) == (3, 3)
    assert events[-1].seq > moves[-1].seq
    # The fan-in job started only after both of its dependencies succeeded.
    order = [(event.job_id, event.kind) for event in moves]
    started = order.index((last, "started"))
    assert order.index((left, "succeeded")) < started
    assert order.index((right, "succeeded")) < started
    assert (last, "waiting") in order[: order.index((last, "queued"))]
    # A batch that ended before its stream was read is replayed without a snapshot.
    snapshots = [event for event in events if isinstance(event, BatchProgressEvent)]
    assert all(0 <= s.progress.fraction <= 1 for s in snapshots)

    done = await client.get_batch(batch.id)
    assert (done.status, done.finished, done.counts.succeeded, done.progress.done) == (
        "finished",
        True,
        3,
        3,
    )
    assert done.progress.fraction == 1.0 and done.eta_s is None
    assert done.finished_at is not None and done.seq == events[-1].seq
    members = await client.list(batch_id=batch.id)
    assert {job.id for job in members.jobs} == {left, right, last}


async def test_a_stream_resumed_from_an_id_replays_only_what_came_after_it(
    client: AsyncClient,
) -> None:
    batch = await client.submit_batch([JobSpec("noop"), JobSpec("noop")])
    everything = await follow(client, batch.id)
    moves = transitions(everything)

    resumed = await follow(client, batch.id, after=moves[2].seq)

    assert [event.seq for event in transitions(resumed)] == [e.seq for e in moves[3:]]
    assert isinstance(resumed[-1], BatchFinished) and resumed[-1].seq == everything[-1].seq


async def test_the_stream_resumes_after_the_connection_is_cut_mid_event(
    client: AsyncClient, proxy: TcpProxy
) -> None:
    batch = await client.submit_batch(
        [JobSpec("sleep_steps", {"steps": 4, "delay_s": 0.05}) for _ in range(3)]
    )
    proxy.cut_after(b"id: 4\r\n", then_refuse=2)

    async with AsyncClient(proxy.url, reconnect=FAST) as through_proxy:
        events = await follow(through_proxy, batch.id)

    assert proxy.cut_done.is_set() and proxy.refused == 2
    moves = transitions(events)
    assert [event.seq for event in moves] == list(range(1, len(moves) + 1))
    assert isinstance(events[-1], BatchFinished) and events[-1].counts.succeeded == 3
    heads = [head for head in proxy.requests() if f"/batches/{batch.id}/events" in head]
    assert "last-event-id" not in heads[0].lower()
    assert "last-event-id: 3" in heads[1].lower()


async def test_the_sync_client_submits_follows_and_reads_a_batch(
    client: AsyncClient, server: ServerHandle
) -> None:
    def run() -> tuple[list[BatchEvent], int]:
        with Client(server.url, reconnect=FAST, timeout_s=WITHIN_S) as sync:
            batch = sync.submit_batch([{"task": "noop"}, {"task": "noop", "queue": "default"}])
            events = list(sync.stream_batch(batch.id))
            return events, sync.get_batch(batch.id).counts.succeeded

    events, succeeded = await asyncio.wait_for(asyncio.to_thread(run), WITHIN_S)
    assert isinstance(events[-1], BatchFinished) and succeeded == 2


async def test_cancel_then_retry_a_batch_and_list_its_members_by_status(
    client: AsyncClient,
) -> None:
    queue = parked_queue()
    batch = await client.submit_batch(
        [
            JobSpec("noop", queue=queue, ref="a"),
            JobSpec("noop", queue=queue),
            JobSpec("noop", queue=queue, depends_on=["a"]),
        ]
    )
    cancelled = await client.cancel_batch(batch.id)
    assert cancelled.count == 3 and cancelled.batch.counts.cancelled == 3
    events = await follow(client, batch.id)
    assert isinstance(events[-1], BatchFinished) and events[-1].counts.cancelled == 3
    assert {job.status for job in (await client.list(batch_id=batch.id)).jobs} == {"cancelled"}
    assert (await client.list(batch_id=batch.id, status="failed")).jobs == []

    failing = await client.submit_batch(
        [JobSpec("fail", {"message": "no"}), JobSpec("noop", ref="ok")]
    )
    failed_end = await follow(client, failing.id)
    assert isinstance(failed_end[-1], BatchFinished) and failed_end[-1].counts.failed == 1
    [failed_job] = (await client.list(batch_id=failing.id, status="failed")).jobs
    assert failed_job.id == failing.job_ids[0]

    retried = await client.retry_batch(failing.id)
    assert retried.count == 1 and not retried.batch.finished
    assert (await client.get(failed_job.id)).attempt == 2


async def test_batches_list_newest_first_in_pages(client: AsyncClient) -> None:
    made = [await client.submit_batch([JobSpec("noop")], name=f"page-{n}") for n in range(3)]
    first = await client.list_batches(limit=2)
    assert [batch.id for batch in first.batches] == [made[2].id, made[1].id]
    assert first.next_cursor is not None
    second = await client.list_batches(limit=2, cursor=first.next_cursor)
    assert second.batches[0].id == made[0].id


async def test_bad_batches_and_unknown_ids_are_typed_errors(client: AsyncClient) -> None:
    with pytest.raises(errors.NotFound):
        await client.get_batch(str(uuid.uuid4()))
    with pytest.raises(errors.NotFound):
        await client.cancel_batch("not-a-batch")
    with pytest.raises(errors.NotFound):
        await follow(client, str(uuid.uuid4()))
    with pytest.raises(errors.Invalid):
        await client.submit_batch([JobSpec("noop"), JobSpec("no_such_task")])
    with pytest.raises(errors.Invalid):
        await client.submit_batch([JobSpec("noop", depends_on=["nobody"])])


async def test_the_typed_user_script_runs_a_batch(
    client: AsyncClient, server: ServerHandle
) -> None:
    lines = await asyncio.wait_for(
        asyncio.to_thread(typed_client.batch_report, server.url), WITHIN_S
    )
    # The fan-in job waits, is released (queued), runs and succeeds; then the batch ends.
    assert lines == [
        "last: waiting",
        "last: queued",
        "last: started",
        "last: succeeded",
        "finished: 3 of 3",
        "depends on 2: True",
    ]
    assert await typed_client.batch_report_async(server.url) == 2


async def test_a_stream_resumed_at_the_end_of_a_finished_batch_ends_at_once(
    client: AsyncClient,
) -> None:
    batch = await client.submit_batch([JobSpec("noop")])
    everything = await follow(client, batch.id)
    end = everything[-1]
    assert isinstance(end, BatchFinished)

    again = await follow(client, batch.id, after=end.seq)

    assert [type(event) for event in again][-1] is BatchFinished
    assert transitions(again) == []
