"""Jobs that wait for other jobs: `depends_on`, the failure policies, and children."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.api import get_job, history, stream_kinds, submit, until


@pytest.fixture
def client(family_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return family_client


async def ended(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once its stream has ended (it reached a terminal status)."""
    await stream_kinds(client, job_id)
    return await get_job(client, job_id)


async def kinds_of(client: httpx.AsyncClient, job_id: str) -> list[str]:
    return [event["kind"] for event in await history(client, job_id)]


async def test_a_dependent_waits_then_runs_once_with_its_dependencies_results(
    client: httpx.AsyncClient,
) -> None:
    first = await submit(client, "square", args={"x": 3})
    second = await submit(client, "square", args={"x": 4})
    collector = await submit(client, "collect", depends_on=[first["id"], second["id"]])
    assert collector["status"] == "waiting"
    assert collector["depends_on"] == [first["id"], second["id"]]
    done = await ended(client, collector["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["results"] == {first["id"]: 9, second["id"]: 16}
    assert await kinds_of(client, collector["id"]) == ["waiting", "queued", "started", "succeeded"]
    waited = await get_job(client, first["id"]), await get_job(client, second["id"])
    assert done["started_at"] >= max(job["finished_at"] for job in waited)


@pytest.mark.parametrize(
    ("policy", "status", "kept"),
    [("fail", "failed", None), ("ignore", "succeeded", False), ("continue", "succeeded", True)],
)
async def test_a_failed_dependency_follows_the_policy(
    client: httpx.AsyncClient, policy: str, status: str, kept: bool | None
) -> None:
    good = await submit(client, "square", args={"x": 2})
    bad = await submit(client, "explode")
    dependent = await submit(
        client, "collect", depends_on=[good["id"], bad["id"]], on_dependency_failure=policy
    )
    done = await ended(client, dependent["id"])
    assert done["status"] == status
    if policy == "fail":
        assert done["error"]["type"] == "DependencyFailed"
        assert bad["id"] in done["error"]["message"]
        assert await kinds_of(client, dependent["id"]) == ["waiting", "failed"]
        return
    assert done["result"]["results"] == {good["id"]: 4}
    assert (bad["id"] in done["result"]["statuses"]) is kept


@pytest.mark.parametrize(
    ("policy", "status"), [("fail", "failed"), ("ignore", "succeeded"), ("continue", "succeeded")]
)
async def test_depending_on_a_job_that_already_failed(
    client: httpx.AsyncClient, policy: str, status: str
) -> None:
    bad = await submit(client, "explode")
    assert (await ended(client, bad["id"]))["status"] == "failed"
    dependent = await submit(
        client, "collect", depends_on=[bad["id"]], on_dependency_failure=policy
    )
    done = await ended(client, dependent["id"])
    assert done["status"] == status


async def test_a_diamond_releases_its_last_job_once(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/batches",
        json={
            "jobs": [
                {"task": "square", "args": {"x": 1}, "ref": "a"},
                {"task": "collect", "ref": "b", "depends_on": ["a"]},
                {"task": "collect", "ref": "c", "depends_on": ["a"]},
                {"task": "collect", "ref": "d", "depends_on": ["b", "c"]},
            ]
        },
    )
    assert response.status_code == 201, response.text
    a, b, c, d = response.json()["job_ids"]
    done = await ended(client, d)
    assert done["status"] == "succeeded"
    assert set(done["result"]["results"]) == {b, c}
    assert await kinds_of(client, d) == ["waiting", "queued", "started", "succeeded"]
    assert (await get_job(client, b))["result"]["results"] == {a: 1}


async def test_children_run_while_the_parent_waits_without_a_slot(
    client: httpx.AsyncClient,
) -> None:
    parent = await submit(client, "sum_squares", args={"n": 5})
    done = await ended(client, parent["id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"sum": 0 + 1 + 4 + 9 + 16, "children": 5}
    assert done["attempt"] == 1
    kinds = await kinds_of(client, parent["id"])
    # It waited, or (when its children all ended first) was queued again at once.
    assert kinds in (
        ["queued", "started", "waiting", "queued", "started", "succeeded"],
        ["queued", "started", "queued", "started", "succeeded"],
    )
    children = (await client.get("/jobs", params={"parent_id": parent["id"]})).json()["jobs"]
    assert len(children) == 5  # the second run found the children of the first
    assert {child["parent_id"] for child in children} == {parent["id"]}
    assert {child["status"] for child in children} == {"succeeded"}


async def test_a_failed_child_fails_a_waiting_parent(client: httpx.AsyncClient) -> None:
    parent = await submit(client, "sum_squares", args={"n": 2, "fail_child": True})
    done = await ended(client, parent["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "DependencyFailed"


async def test_with_continue_the_parent_gets_the_results_that_exist(
    client: httpx.AsyncClient,
) -> None:
    parent = await submit(
        client,
        "sum_squares",
        args={"n": 3, "fail_child": True},
        on_dependency_failure="continue",
    )
    done = await ended(client, parent["id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"sum": 0 + 1 + 4, "children": 3}


async def test_cancelling_a_parent_cancels_its_children(client: httpx.AsyncClient) -> None:
    parent = await submit(client, "parent_of_dawdlers", args={"n": 2})

    async def children_running_parent_waiting() -> list[dict[str, Any]] | None:
        page = (await client.get("/jobs", params={"parent_id": parent["id"]})).json()["jobs"]
        running = [job for job in page if job["status"] == "running"]
        waiting = (await get_job(client, parent["id"]))["status"] == "waiting"
        return page if len(running) == 2 and waiting else None

    children = await until(children_running_parent_waiting, within_s=20)
    response = await client.post(f"/jobs/{parent['id']}/cancel")
    assert response.status_code == 200, response.text
    for child in children:
        assert (await ended(client, child["id"]))["status"] == "cancelled"


async def test_retrying_a_job_whose_dependency_still_failed_is_refused(
    client: httpx.AsyncClient,
) -> None:
    bad = await submit(client, "explode")
    dependent = await submit(client, "collect", depends_on=[bad["id"]])
    assert (await ended(client, dependent["id"]))["status"] == "failed"
    response = await client.post(f"/jobs/{dependent['id']}/retry")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "dependency_failed"


@pytest.mark.parametrize(
    ("jobs", "code"),
    [
        (
            [{"task": "square", "args": {"x": 1}, "ref": "a", "depends_on": ["a"]}],
            "self_dependency",
        ),
        (
            [
                {"task": "collect", "ref": "a", "depends_on": ["b"]},
                {"task": "collect", "ref": "b", "depends_on": ["a"]},
            ],
            "dependency_cycle",
        ),
        ([{"task": "collect", "depends_on": ["nope"]}], "unknown_dependency"),
        ([{"task": "collect", "depends_on": [str(uuid.uuid4())]}], "unknown_dependency"),
        (
            [{"task": "collect", "ref": "a"}, {"task": "collect", "ref": "a"}],
            "duplicate_ref",
        ),
        ([{"task": "collect", "on_dependency_failure": "explode"}], "invalid_batch"),
    ],
)
async def test_bad_dependencies_are_refused_and_nothing_is_created(
    client: httpx.AsyncClient, jobs: list[dict[str, Any]], code: str
) -> None:
    before = len((await client.get("/jobs", params={"limit": 500})).json()["jobs"])
    response = await client.post("/batches", json={"jobs": jobs})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    after = len((await client.get("/jobs", params={"limit": 500})).json()["jobs"])
    assert after == before


async def test_another_tenants_job_cannot_be_depended_on(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    foreign = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, task, tenant, seq) VALUES ($1, 'square', 'someone-else', 0)",
        foreign,
    )
    response = await client.post("/jobs", json={"task": "collect", "depends_on": [str(foreign)]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_dependency"


async def test_a_dependency_that_is_not_a_uuid_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"task": "collect", "depends_on": ["a"]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_dependency"
