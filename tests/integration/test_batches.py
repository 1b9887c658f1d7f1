"""Batches: created in one transaction, followed as one, with a gapless resumable stream."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support.api import get_job, until


@pytest.fixture
def client(family_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return family_client


async def create(client: httpx.AsyncClient, jobs: list[dict[str, Any]], **fields: Any) -> Any:
    response = await client.post("/batches", json={"jobs": jobs, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def read_stream(
    client: httpx.AsyncClient, batch_id: str, last_event_id: int | None = None, stop_after: int = 0
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event, id, data) of the batch stream until it ends, or after `stop_after` events
    that carry an id."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    seen: list[tuple[str, str | None, dict[str, Any]]] = []
    async with aconnect_sse(
        client, "GET", f"/batches/{batch_id}/events", headers=headers
    ) as source:
        async for sse in source.aiter_sse():
            if sse.data == "":
                continue
            seen.append((sse.event, sse.id or None, sse.json()))
            if stop_after and sum(1 for _, sid, _ in seen if sid) == stop_after:
                break
    return seen


def sequenced(events: list[tuple[str, str | None, dict[str, Any]]]) -> list[int]:
    return [int(sid) for event, sid, _ in events if event != "progress" and sid]


async def test_a_batch_is_created_with_its_counts(client: httpx.AsyncClient) -> None:
    batch = await create(
        client,
        [{"task": "square", "args": {"x": n}} for n in range(3)],
        name="squares",
        metadata={"owner": "tests"},
    )
    assert batch["name"] == "squares" and batch["metadata"] == {"owner": "tests"}
    assert batch["total"] == 3 and len(batch["job_ids"]) == 3
    assert batch["counts"]["queued"] == 3 and batch["status"] == "open"
    job = await get_job(client, batch["job_ids"][0])
    assert job["batch_id"] == batch["id"]
    listed = (await client.get("/jobs", params={"batch_id": batch["id"]})).json()["jobs"]
    assert {job["id"] for job in listed} == set(batch["job_ids"])


async def test_the_stream_is_gapless_ends_finished_and_resumes_exactly(
    client: httpx.AsyncClient,
) -> None:
    batch = await create(client, [{"task": "square", "args": {"x": n}} for n in range(20)])
    whole = await read_stream(client, batch["id"])
    seqs = sequenced(whole)
    assert seqs == list(range(1, len(seqs) + 1))
    last_event, _, last_data = whole[-1]
    assert last_event == "batch.finished"
    assert last_data["counts"] == {"succeeded": 20, "failed": 0, "cancelled": 0}
    # per member: queued, started, succeeded; then the end
    assert len(seqs) == 20 * 3 + 1
    members = [data for event, _, data in whole if event == "job"]
    assert {data["job_id"] for data in members} == set(batch["job_ids"])
    resumed = await read_stream(client, batch["id"], last_event_id=25)
    assert sequenced(resumed) == list(range(26, len(seqs) + 1))
    assert [d for e, _, d in resumed if e == "job"] == [d for e, _, d in whole if e == "job"][25:]
    done = (await client.get(f"/batches/{batch['id']}")).json()
    assert done["status"] == "finished" and done["progress"]["fraction"] == 1.0
    assert done["counts"]["succeeded"] == 20 and done["finished_at"] is not None


async def test_progress_events_follow_running_members(client: httpx.AsyncClient) -> None:
    batch = await create(
        client, [{"task": "sleep_steps", "args": {"steps": 4, "delay_s": 0.2}} for _ in range(2)]
    )
    events = await read_stream(client, batch["id"])
    fractions = [data["progress"]["fraction"] for event, _, data in events if event == "progress"]
    assert fractions == sorted(fractions)
    assert any(0 < fraction < 1 for fraction in fractions)
    # A snapshot carries no id of its own: a client resuming after it resumes after the
    # last transition it saw, which is the one the snapshot includes.
    assert all(
        sid is None or int(sid) == data["seq"] for event, sid, data in events if event == "progress"
    )


async def test_cancelling_a_batch_cancels_every_open_member(client: httpx.AsyncClient) -> None:
    batch = await create(client, [{"task": "dawdle"} for _ in range(3)])

    async def some_running() -> bool:
        body = (await client.get(f"/batches/{batch['id']}")).json()
        return bool(body["counts"]["running"])

    await until(some_running, within_s=20)
    response = await client.post(f"/batches/{batch['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["cancelled"] == 3
    events = await read_stream(client, batch["id"])
    assert events[-1][2]["counts"] == {"succeeded": 0, "failed": 0, "cancelled": 3}


async def test_cancelling_a_batch_cancels_its_waiting_dependents_not_fails_them(
    client: httpx.AsyncClient,
) -> None:
    parked = f"parked-{uuid.uuid4().hex[:8]}"  # no worker reads it: nothing starts
    batch = await create(
        client,
        [
            {"task": "square", "args": {"x": 1}, "queue": parked, "ref": "a"},
            {"task": "collect", "queue": parked, "ref": "b", "depends_on": ["a"]},
            {"task": "collect", "queue": parked, "depends_on": ["b"]},
        ],
    )
    response = await client.post(f"/batches/{batch['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["cancelled"] == 3
    counts = response.json()["batch"]["counts"]
    assert (counts["cancelled"], counts["failed"]) == (3, 0)


async def test_retry_reruns_failed_members_and_their_dependents(client: httpx.AsyncClient) -> None:
    batch = await create(
        client,
        [
            {"task": "flaky", "args": {"fail_times": 1}, "max_attempts": 1, "ref": "flaky"},
            {"task": "collect", "depends_on": ["flaky"]},
        ],
    )
    first = await read_stream(client, batch["id"])
    assert first[-1][2]["counts"] == {"succeeded": 0, "failed": 2, "cancelled": 0}
    response = await client.post(f"/batches/{batch['id']}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["retried"] == 2
    second = await read_stream(client, batch["id"], last_event_id=int(first[-1][1] or 0))
    assert second[-1][0] == "batch.finished"
    assert second[-1][2]["counts"] == {"succeeded": 2, "failed": 0, "cancelled": 0}


async def test_children_join_their_parents_batch(client: httpx.AsyncClient) -> None:
    batch = await create(client, [{"task": "sum_squares", "args": {"n": 4}}])
    events = await read_stream(client, batch["id"])
    assert events[-1][2]["counts"]["succeeded"] == 5  # the parent and its four children
    assert (await client.get(f"/batches/{batch['id']}")).json()["total"] == 5


async def test_the_documents_example_runs_every_member_once(client: httpx.AsyncClient) -> None:
    # `build_index` is spawned, with its edges, while the embeddings it waits for end:
    # linking and ending must not deadlock (each member runs its first attempt only).
    for _ in range(3):
        batch = await create(
            client, [{"task": "split_pdf", "args": {"document": "d", "chunks": 30}}]
        )
        events = await read_stream(client, batch["id"])
        assert events[-1][2]["counts"] == {"succeeded": 32, "failed": 0, "cancelled": 0}
        members = (await client.get("/jobs", params={"batch_id": batch["id"], "limit": 100})).json()
        assert {job["attempt"] for job in members["jobs"]} == {1}
        kinds = {data["kind"] for event, _, data in events if event == "job"}
        assert "requeued" not in kinds


async def test_batches_are_listed_newest_first_in_pages(client: httpx.AsyncClient) -> None:
    made = [(await create(client, [{"task": "square", "args": {"x": 1}}]))["id"] for _ in range(3)]
    first = (await client.get("/batches", params={"limit": 2})).json()
    assert [b["id"] for b in first["batches"]] == made[::-1][:2]
    rest = (
        await client.get("/batches", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert rest["batches"][0]["id"] == made[0]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"jobs": []}, 422),
        ({"jobs": [{"task": "square", "args": {"x": 1}}], "metadata": "x"}, 422),
        ({"jobs": [{"task": "square", "args": {"x": "one"}}]}, 422),
        ({"jobs": [{"task": "nope"}]}, 422),
        ({"jobs": [{"task": "square", "args": {"x": 1}}], "extra": 1}, 422),
    ],
)
async def test_bad_batches_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    response = await client.post("/batches", json=body)
    assert response.status_code == status, response.text
    assert "error" in response.json()


@pytest.mark.parametrize("path", ["/batches/{id}", "/batches/{id}/events", "/batches/not-a-uuid"])
async def test_unknown_batches_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path.format(id=uuid.uuid4()))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_resume_after_the_end_ends_at_once(client: httpx.AsyncClient) -> None:
    batch = await create(client, [{"task": "square", "args": {"x": 1}}])
    whole = await read_stream(client, batch["id"])
    last = int(whole[-1][1] or 0)
    resumed = await asyncio.wait_for(read_stream(client, batch["id"], last_event_id=last), 10)
    assert [event for event, _, _ in resumed if event != "progress"] == []


async def test_a_resume_beyond_the_last_event_is_refused(client: httpx.AsyncClient) -> None:
    batch = await create(client, [{"task": "square", "args": {"x": 1}}])
    response = await client.get(f"/batches/{batch['id']}/events", headers={"Last-Event-ID": "999"})
    assert response.status_code == 422


async def test_a_member_transition_reaches_an_open_stream_live(client: httpx.AsyncClient) -> None:
    batch = await create(client, [{"task": "square", "args": {"x": 2}}])
    events = await asyncio.wait_for(read_stream(client, batch["id"]), timeout=20)
    kinds = [data.get("kind") for event, _, data in events if event == "job"]
    assert kinds == ["queued", "started", "succeeded"]
