"""The client's batch API without a server: what it sends, how it reads the answers, and how
`stream_batch` resumes a dropped stream without losing, repeating or reordering anything.

The server here is an `httpx.MockTransport` that speaks the batch stream's wire format and
cuts a connection in the middle, as a proxy restart would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from tidings.client import (
    AsyncClient,
    Batch,
    BatchFinished,
    BatchJobEvent,
    BatchProgressEvent,
    Client,
    Job,
    JobSpec,
    ReconnectPolicy,
    errors,
)
from tidings.client.batch_cursor import BatchCursor
from tidings.client.batch_models import BatchEvent

BATCH_ID = "0b6c2a4e-0000-4000-8000-000000000001"
FAST = ReconnectPolicy(attempts=3, first_delay_s=0.001, max_delay_s=0.002)
COUNTS = {
    "waiting": 1,
    "queued": 0,
    "running": 1,
    "retrying": 0,
    "succeeded": 1,
    "failed": 0,
    "cancelled": 0,
}


def batch_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": BATCH_ID,
        "name": "nightly",
        "metadata": {"owner": "ops"},
        "tenant": "default",
        "created_at": "2026-12-06T10:00:00+00:00",
        "started_at": "2026-12-06T10:00:01+00:00",
        "finished_at": None,
        "status": "open",
        "total": 3,
        "counts": COUNTS,
        "progress": {"done": 1, "total": 3, "fraction": 0.5},
        "eta_s": 4.5,
        "seq": 4,
    }
    body.update(overrides)
    return body


def job_event(seq: int, kind: str, status: str) -> str:
    data = {
        "seq": seq,
        "batch_id": BATCH_ID,
        "job_id": f"job-{seq}",
        "task": "noop",
        "kind": kind,
        "status": status,
        "at": "2026-12-06T10:00:02+00:00",
    }
    return f"event: job\nid: {seq}\ndata: {json.dumps(data)}\n\n"


def progress_event(seq: int, done: int, counts: dict[str, int] = COUNTS) -> str:
    data = {
        "batch_id": BATCH_ID,
        "counts": counts,
        "total": 3,
        "progress": {"done": done, "total": 3, "fraction": done / 3},
        "eta_s": 1.0,
        "at": "2026-12-06T10:00:02+00:00",
        "seq": seq,
    }
    return f"event: progress\ndata: {json.dumps(data)}\n\n"


def finished_event(seq: int) -> str:
    data = {
        "seq": seq,
        "batch_id": BATCH_ID,
        "counts": {**COUNTS, "waiting": 0, "running": 0, "succeeded": 3},
        "total": 3,
        "finished_at": "2026-12-06T10:00:09+00:00",
    }
    return f"event: batch.finished\nid: {seq}\ndata: {json.dumps(data)}\n\n"


class Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that sends `chunks`, then breaks like a dropped connection (or, with
    `breaks=False`, ends as a server closing the stream does)."""

    def __init__(self, chunks: list[str], *, breaks: bool) -> None:
        self.chunks = [chunk.encode() for chunk in chunks]
        self.breaks = breaks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.breaks:
            raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.breaks:
            raise httpx.ReadError("connection reset by peer")


class FakeServer:
    """Answers each connection to the stream with the next script, and records the
    `Last-Event-ID` each one sent; `GET /batches/{id}` answers `batch`."""

    def __init__(self, scripts: list[tuple[list[str], bool]], batch: dict[str, Any]) -> None:
        self.scripts = scripts
        self.batch = batch
        self.resumed_after: list[str | None] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == f"/batches/{BATCH_ID}/events":
            self.resumed_after.append(request.headers.get("last-event-id"))
            chunks, breaks = self.scripts.pop(0)
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=Broken(chunks, breaks=breaks),
            )
        if request.url.path == f"/batches/{BATCH_ID}":
            return httpx.Response(200, json=self.batch)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})


def dropped_then_resumed() -> list[tuple[list[str], bool]]:
    return [
        (
            [
                job_event(1, "queued", "queued"),
                progress_event(1, 0),
                job_event(2, "started", "running"),
            ],
            True,
        ),
        # The server replays from Last-Event-ID; a stale snapshot and a repeat must not show.
        (
            [
                job_event(2, "started", "running"),
                progress_event(1, 0),
                job_event(3, "succeeded", "succeeded"),
                progress_event(3, 1),
                finished_event(3),
            ],
            False,
        ),
    ]


def shape(events: list[BatchEvent]) -> list[tuple[str, int]]:
    return [(type(event).__name__, event.seq) for event in events]


EXPECTED = [
    ("BatchJobEvent", 1),
    ("BatchProgressEvent", 1),
    ("BatchJobEvent", 2),
    ("BatchJobEvent", 3),
    ("BatchProgressEvent", 3),
    ("BatchFinished", 3),
]


async def test_the_async_stream_resumes_after_a_drop_with_last_event_id_and_no_repeats() -> None:
    server = FakeServer(dropped_then_resumed(), batch_json())
    transport = httpx.MockTransport(server)
    async with AsyncClient("http://tidings.test", reconnect=FAST, transport=transport) as client:
        events = [event async for event in client.stream_batch(BATCH_ID)]
    assert shape(events) == EXPECTED
    assert server.resumed_after == [None, "2"]
    job = events[0]
    assert isinstance(job, BatchJobEvent)
    assert (job.job_id, job.kind, job.status, job.task) == ("job-1", "queued", "queued", "noop")
    end = events[-1]
    assert isinstance(end, BatchFinished)
    assert (end.counts.succeeded, end.counts.ended, end.total) == (3, 3, 3)
    assert end.finished_at is not None


def test_the_sync_stream_resumes_the_same_way() -> None:
    server = FakeServer(dropped_then_resumed(), batch_json())
    with Client(
        "http://tidings.test", reconnect=FAST, transport=httpx.MockTransport(server)
    ) as client:
        events = list(client.stream_batch(BATCH_ID))
    assert shape(events) == EXPECTED
    assert server.resumed_after == [None, "2"]


async def test_a_stream_started_after_an_id_sends_it_and_a_quiet_close_ends_from_the_batch() -> (
    None
):
    # The server has nothing after 4 and closes at once: the batch says it finished at 4.
    finished = batch_json(status="finished", finished_at="2026-12-06T10:00:09+00:00")
    server = FakeServer([([], False)], finished)
    transport = httpx.MockTransport(server)
    async with AsyncClient("http://tidings.test", reconnect=FAST, transport=transport) as client:
        events = [event async for event in client.stream_batch(BATCH_ID, last_event_id=4)]
    assert server.resumed_after == ["4"]
    assert len(events) == 1 and isinstance(events[0], BatchFinished)
    assert (events[0].seq, events[0].total, events[0].raw["batch_id"]) == (4, 3, BATCH_ID)


async def test_a_quiet_close_of_an_open_batch_reconnects_and_gives_up_after_the_policy() -> None:
    server = FakeServer([([], False)] * 5, batch_json())
    transport = httpx.MockTransport(server)
    async with AsyncClient("http://tidings.test", reconnect=FAST, transport=transport) as client:
        with pytest.raises(errors.ConnectionError) as raised:
            [event async for event in client.stream_batch(BATCH_ID, last_event_id=2)]
    assert "gave up resuming the event stream of batch" in raised.value.message
    assert server.resumed_after == ["2"] * 4  # the first connection, then 3 attempts


async def test_an_unknown_batch_is_not_found_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no batch"}})

    transport = httpx.MockTransport(handler)
    async with AsyncClient("http://tidings.test", reconnect=FAST, transport=transport) as client:
        with pytest.raises(errors.NotFound):
            [event async for event in client.stream_batch(BATCH_ID)]
        with pytest.raises(errors.NotFound):
            await client.get_batch(BATCH_ID)


def test_the_cursor_skips_keepalives_and_unknown_event_names() -> None:
    from httpx_sse import ServerSentEvent

    cursor = BatchCursor(BATCH_ID, 0, FAST)
    assert cursor.accept(ServerSentEvent(event="message", data="", id="3")) is None
    assert cursor.accept(ServerSentEvent(event="batch.renamed", data="{}")) is None
    assert cursor.last_seq == 0 and cursor.seen_in_connection == 0


def test_a_batch_parses_its_counts_progress_and_times() -> None:
    batch = Batch.from_json({**batch_json(), "job_ids": ["a", "b", "c"], "extra": 1})
    assert (batch.id, batch.name, batch.status, batch.finished) == (
        BATCH_ID,
        "nightly",
        "open",
        False,
    )
    assert batch.metadata == {"owner": "ops"}
    assert (batch.counts.waiting, batch.counts.running, batch.counts.of("succeeded")) == (1, 1, 1)
    assert (batch.progress.done, batch.progress.total, batch.progress.fraction) == (1, 3, 0.5)
    assert (batch.eta_s, batch.seq, batch.job_ids) == (4.5, 4, ["a", "b", "c"])
    assert batch.created_at is not None and batch.finished_at is None
    assert batch.raw["extra"] == 1
    assert Batch.from_json({"id": "x"}).counts.ended == 0


def test_a_job_parses_its_batch_parent_and_dependencies() -> None:
    job = Job.from_json(
        {
            "id": "j",
            "task": "noop",
            "status": "waiting",
            "batch_id": "b",
            "parent_id": None,
            "depends_on": ["d1", "d2"],
            "on_dependency_failure": "continue",
        }
    )
    assert (job.status, job.batch_id, job.parent_id) == ("waiting", "b", None)
    assert (job.depends_on, job.on_dependency_failure) == (["d1", "d2"], "continue")
    older = Job.from_json({"id": "j", "task": "noop", "status": "queued"})
    assert (older.batch_id, older.depends_on, older.on_dependency_failure) == (None, [], None)


def recording_client(answer: dict[str, Any]) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201 if request.method == "POST" else 200, json=answer)

    return Client("http://tidings.test", transport=httpx.MockTransport(handler)), seen


def test_submit_batch_sends_refs_dependencies_name_and_metadata() -> None:
    client, seen = recording_client({**batch_json(), "job_ids": ["1", "2"]})
    with client:
        batch = client.submit_batch(
            [
                JobSpec("fetch", {"url": "u"}, ref="fetch"),
                {"task": "merge", "depends_on": ["fetch"], "on_dependency_failure": "ignore"},
            ],
            name="nightly",
            metadata={"owner": "ops"},
        )
    assert batch.job_ids == ["1", "2"]
    assert (seen[0].method, seen[0].url.path) == ("POST", "/batches")
    assert json.loads(seen[0].content) == {
        "jobs": [
            {"task": "fetch", "args": {"url": "u"}, "ref": "fetch"},
            {"task": "merge", "depends_on": ["fetch"], "on_dependency_failure": "ignore"},
        ],
        "name": "nightly",
        "metadata": {"owner": "ops"},
    }


@pytest.mark.parametrize(
    ("call", "method", "path", "count_field"),
    [
        (lambda c: c.cancel_batch("a/b"), "POST", "/batches/a%2Fb/cancel", "cancelled"),
        (lambda c: c.retry_batch("x"), "POST", "/batches/x/retry", "retried"),
    ],
)
def test_cancel_and_retry_read_the_batch_and_the_count(
    call: Callable[[Client], Any], method: str, path: str, count_field: str
) -> None:
    client, seen = recording_client({"batch": batch_json(), count_field: 2})
    with client:
        change = call(client)
    assert (seen[0].method, seen[0].url.raw_path.decode()) == (method, path)
    assert (change.batch.id, change.count) == (BATCH_ID, 2)


def test_list_batches_and_jobs_of_a_batch_or_parent_send_their_filters() -> None:
    client, seen = recording_client({"batches": [batch_json()], "next_cursor": "c2", "jobs": []})
    with client:
        page = client.list_batches(limit=5, cursor="c1")
        client.list(batch_id="b", status="failed")
        client.list(parent_id="p")
    assert [batch.id for batch in page.batches] == [BATCH_ID] and page.next_cursor == "c2"
    assert dict(seen[0].url.params) == {"limit": "5", "cursor": "c1"}
    assert dict(seen[1].url.params) == {"status": "failed", "batch_id": "b"}
    assert dict(seen[2].url.params) == {"parent_id": "p"}


def test_a_progress_snapshot_carries_counts_fraction_and_eta() -> None:
    event = BatchProgressEvent.from_json(json.loads(progress_event(2, 2).split("data: ")[1]))
    assert (event.seq, event.total, event.progress.done, event.eta_s) == (2, 3, 2, 1.0)
    assert event.progress.fraction == pytest.approx(2 / 3)
    assert event.counts.running == 1


async def test_a_stream_resumed_after_its_own_end_ends_from_the_batch() -> None:
    # The server has no `batch.finished` left to send after seq 4, only a snapshot in which
    # no member is open; then it would wait. The client asks the batch, which has finished.
    ended = {**COUNTS, "waiting": 0, "running": 0, "succeeded": 3}
    finished = batch_json(status="finished", counts=ended, finished_at="2026-12-06T10:00:09Z")
    server = FakeServer([([progress_event(4, 3, ended)], False)], finished)
    transport = httpx.MockTransport(server)
    async with AsyncClient("http://tidings.test", reconnect=FAST, transport=transport) as client:
        events = [event async for event in client.stream_batch(BATCH_ID, last_event_id=4)]
    assert shape(events) == [("BatchProgressEvent", 4), ("BatchFinished", 4)]
    with Client(
        "http://tidings.test",
        transport=httpx.MockTransport(
            FakeServer([([progress_event(4, 3, ended)], False)], finished)
        ),
    ) as sync:
        assert shape(list(sync.stream_batch(BATCH_ID, last_event_id=4)))[-1] == ("BatchFinished", 4)
