"""Fair sharing against the real server and worker: concurrency keys and their overflow
strategies, keyed rate limits, and the round robin across tenants and keys.

Every wait is a bounded loop on a condition; tasks that must hold their slot wait on a
gate the test opens. Limits are checked from the event history (`started` to the end of
the attempt), so an instant with one job too many shows up whoever caused it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from tests.integration.test_claim_race import running_peak
from tests.integration.test_observability import scrape
from tests.support.api import get_job, history, submit, until
from tests.support.fair_sharing_tasks import RATE, gates
from tests.support.servers import ServerHandle, WorkerHandle, start_server
from tidings import Tidings
from tidings.core import queue
from tidings.core.concurrency_keys import KeyedFields, scoped_key
from tidings.core.db import jobs
from tidings.core.errors import BadRequest, Conflict
from tidings.core.rate_limits import parse_rate
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter

WITHIN_S = 20.0
# How much earlier than its `started` event a job may have taken its rate token.
TOKEN_LAG_S = 0.05


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        tasks=("tidings.worker.tasks.examples", "tests.support.fair_sharing_tasks"),
        queues=("default", "keyed", "rated"),
        concurrency=8,
    )


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


@pytest.fixture(scope="module")
async def tidings(settings: Settings, worker: WorkerHandle) -> AsyncIterator[Tidings]:
    # The worker registers the tasks an in-process submit is validated against.
    async with Tidings(settings) as tidings:
        yield tidings


def gate_name() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


async def status_of(client: httpx.AsyncClient, job_id: str) -> str:
    status: str = (await get_job(client, job_id))["status"]
    return status


async def all_ended(client: httpx.AsyncClient, ids: list[str]) -> bool:
    statuses = [await status_of(client, job_id) for job_id in ids]
    return all(status in ("succeeded", "failed", "cancelled") for status in statuses)


async def key_events(pool: asyncpg.Pool, key: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT e.kind, e.at FROM job_history e JOIN jobs j ON j.id = e.job_id "
            "WHERE j.concurrency_key = $1",
            key,
        )
    )


# --- concurrency keys -----------------------------------------------------------------------


async def test_a_key_runs_at_most_max_per_key_and_the_rest_wait_saying_why(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    ids = [
        (await submit(client, "export", args={"customer_id": customer, "gate": gate}))["id"]
        for _ in range(6)
    ]
    other = await submit(client, "export", args={"customer_id": customer + "-other"})

    async def two_running() -> list[str]:
        statuses = [await status_of(client, job_id) for job_id in ids]
        return [s for s in statuses if s == "running"] if statuses.count("running") == 2 else []

    await until(two_running, WITHIN_S)
    # Another key is not held back by this one.
    await until(lambda: _is(client, other["id"], "succeeded"), WITHIN_S)
    waiting = [job for job in [await get_job(client, i) for i in ids] if job["status"] == "queued"]
    assert len(waiting) == 4
    assert {job["waiting_reason"] for job in waiting} == {"concurrency_key"}

    gates.open(gate)
    await until(lambda: all_ended(client, ids), WITHIN_S)
    assert {await status_of(client, job_id) for job_id in ids} == {"succeeded"}
    events = await key_events(pool, scoped_key("default", customer))
    assert running_peak(events) == 2


async def _is(client: httpx.AsyncClient, job_id: str, status: str) -> bool:
    return await status_of(client, job_id) == status


async def test_max_per_key_given_with_the_submission_overrides_the_tasks(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    gate, key = gate_name(), f"mine-{uuid.uuid4().hex[:6]}"
    ids = [
        (
            await submit(
                client,
                "export",
                args={"gate": gate},
                concurrency_key=key,
                max_per_key=1,
            )
        )["id"]
        for _ in range(3)
    ]
    await until(lambda: _is(client, ids[0], "running"), WITHIN_S)
    second = await get_job(client, ids[1])
    assert second["status"] == "queued" and second["waiting_reason"] == "concurrency_key"
    gates.open(gate)
    await until(lambda: all_ended(client, ids), WITHIN_S)
    assert running_peak(await key_events(pool, scoped_key("default", key))) == 1


async def test_cancel_newest_refuses_the_new_job_naming_the_running_one(
    client: httpx.AsyncClient,
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    first = await submit(client, "refuse_newest", args={"customer_id": customer, "gate": gate})
    await until(lambda: _is(client, first["id"], "running"), WITHIN_S)
    refused = await client.post(
        "/jobs", json={"task": "refuse_newest", "args": {"customer_id": customer}}
    )
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "concurrency_key_full"
    assert error["details"]["running_job_id"] == first["id"]
    assert error["details"]["concurrency_key"] == customer
    # Another customer is not refused.
    other = await submit(client, "refuse_newest", args={"customer_id": customer + "-b"})
    gates.open(gate)
    await until(lambda: all_ended(client, [first["id"], other["id"]]), WITHIN_S)
    assert await status_of(client, first["id"]) == "succeeded"


async def test_cancel_in_progress_stops_the_running_job_and_runs_the_new_one(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    old = await submit(client, "replace_running", args={"customer_id": customer, "gate": gate})
    await until(lambda: _is(client, old["id"], "running"), WITHIN_S)
    new = await submit(client, "replace_running", args={"customer_id": customer})
    await until(lambda: _is(client, new["id"], "succeeded"), WITHIN_S)
    assert await status_of(client, old["id"]) == "cancelled"
    kinds = [(event["kind"], event["data"]) for event in await history(client, old["id"])]
    assert kinds[-1][0] == "cancelled"
    [note] = [data for kind, data in kinds if kind == "log"]
    assert note == {"reason": "cancel_in_progress", "superseded_by": new["id"]}
    # The new job started only once the old one had ended.
    assert running_peak(await key_events(pool, scoped_key("default", customer))) == 1


async def test_keep_latest_cancels_older_waiting_jobs_with_a_reason(
    client: httpx.AsyncClient,
) -> None:
    gate = gate_name()
    running = await submit(client, "keep_latest", args={"version": 1, "gate": gate})
    await until(lambda: _is(client, running["id"], "running"), WITHIN_S)
    second = await submit(client, "keep_latest", args={"version": 2})
    third = await submit(client, "keep_latest", args={"version": 3})
    cancelled = await get_job(client, second["id"])
    assert cancelled["status"] == "cancelled"
    [event] = [e for e in await history(client, second["id"]) if e["kind"] == "cancelled"]
    assert event["data"] == {"reason": "keep_latest", "superseded_by": third["id"]}
    assert event["message"] == "a newer job of its concurrency key replaces it"
    assert (await get_job(client, third["id"]))["waiting_reason"] == "concurrency_key"
    gates.open(gate)
    await until(lambda: _is(client, third["id"], "succeeded"), WITHIN_S)
    assert (await get_job(client, third["id"]))["result"] == 3
    assert await status_of(client, running["id"]) == "succeeded"  # running ones are kept


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "export", "args": {}}, "args.customer_id"),  # the template's arg is missing
        ({"task": "export", "args": {"customer_id": {"a": 1}}}, "args.customer_id"),
        ({"task": "export", "args": {"customer_id": "c"}, "max_per_key": 0}, "body.max_per_key"),
        ({"task": "call_api", "args": {"api": "x"}, "max_per_key": 2}, "body.max_per_key"),
        ({"task": "export", "concurrency_key": ""}, "body.concurrency_key"),
    ],
)
async def test_bad_key_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


async def test_a_strategy_other_than_queue_is_refused_in_a_batch(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/jobs/batch",
        json={"jobs": [{"task": "keep_latest", "args": {"version": 1}}]},
    )
    assert response.status_code == 422, response.text
    assert "single submissions" in response.json()["error"]["details"]["errors"][0]["message"]


async def test_a_strategy_cannot_be_combined_with_depends_on(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs",
        json={"task": "keep_latest", "args": {"version": 1}, "depends_on": [str(uuid.uuid4())]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "body.depends_on"


async def test_an_in_process_submit_applies_the_keys_strategy(
    client: httpx.AsyncClient, tidings: Tidings
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    first = await tidings.submit("refuse_newest", {"customer_id": customer, "gate": gate})
    await until(lambda: _is(client, first["id"], "running"), WITHIN_S)
    with pytest.raises(Conflict) as refused:
        await tidings.submit("refuse_newest", {"customer_id": customer})
    assert refused.value.code == "concurrency_key_full"
    assert (refused.value.details or {})["running_job_id"] == first["id"]
    gates.open(gate)
    await until(lambda: _is(client, first["id"], "succeeded"), WITHIN_S)


async def test_a_strategy_in_the_callers_transaction_acts_only_if_it_commits(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    settings: Settings,
    tidings: Tidings,
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    old = await submit(client, "replace_running", args={"customer_id": customer, "gate": gate})
    await until(lambda: _is(client, old["id"], "running"), WITHIN_S)
    # The caller's own asyncpg connection, with asyncpg's own codecs (JSON as text).
    conn = await asyncpg.connect(settings.database_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        dropped = await tidings.submit(
            "replace_running", {"customer_id": customer}, connection=conn
        )
        await transaction.rollback()
        assert (await client.get(f"/jobs/{dropped['id']}")).status_code == 404
        assert [event["kind"] for event in await history(client, old["id"])] == [
            "queued",
            "started",
        ]
        async with conn.transaction():
            new = await tidings.submit(
                "replace_running", {"customer_id": customer}, connection=conn
            )
    finally:
        await conn.close()
    await until(lambda: _is(client, new["id"], "succeeded"), WITHIN_S)
    kinds = [(event["kind"], event["data"]) for event in await history(client, old["id"])]
    assert kinds[-1][0] == "cancelled"
    [(seq, note)] = [
        (event["seq"], event["data"])
        for event in await history(client, old["id"])
        if event["kind"] == "log"
    ]
    assert note == {"reason": "cancel_in_progress", "superseded_by": new["id"]}
    # Announced when the caller committed: a worker took the notice and published it.
    claimed = f"{settings.namespace}:cascade:{old['id']}:{seq}"
    await until(lambda: redis.exists(claimed), WITHIN_S)
    assert running_peak(await key_events(pool, scoped_key("default", customer))) == 1


async def test_a_strategy_in_a_repeatable_read_transaction_is_refused(
    pool: asyncpg.Pool, tidings: Tidings
) -> None:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        with pytest.raises(BadRequest) as refused:
            await tidings.submit(
                "refuse_newest", {"customer_id": f"c-{uuid.uuid4().hex[:6]}"}, connection=conn
            )
    assert refused.value.code == "unsupported_isolation"


async def test_a_retried_submission_gets_its_job_back_instead_of_the_strategys_answer(
    client: httpx.AsyncClient,
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    body = {
        "task": "refuse_newest",
        "args": {"customer_id": customer, "gate": gate},
        "idempotency_key": f"k-{uuid.uuid4().hex[:8]}",
    }
    first = await client.post("/jobs", json=body)
    assert first.status_code == 202, first.text
    again = await client.post("/jobs", json=body)  # its own job fills the key now
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    gates.open(gate)
    await until(lambda: _is(client, first.json()["id"], "succeeded"), WITHIN_S)


# --- rate limits ----------------------------------------------------------------------------


async def test_a_rate_limit_spaces_starts_by_its_bucket_and_fails_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    api, rate = f"api-{uuid.uuid4().hex[:6]}", parse_rate(RATE)
    ids = [(await submit(client, "call_api", args={"api": api}))["id"] for _ in range(12)]

    async def rate_limited_one() -> dict[str, Any] | None:
        for job_id in ids:
            job = await get_job(client, job_id)
            if job["waiting_reason"] == "rate_limit":
                return job
        return None

    limited = await until(rate_limited_one, WITHIN_S)
    assert limited["status"] == "queued" and limited["progress"]["eta_s"] > 0
    await until(lambda: all_ended(client, ids), WITHIN_S)
    assert {await status_of(client, job_id) for job_id in ids} == {"succeeded"}
    starts = sorted(
        row["at"]
        for row in await pool.fetch(
            "SELECT e.at FROM job_history e JOIN jobs j ON j.id = e.job_id "
            "WHERE j.rate_key = $1 AND e.kind = 'started'",
            api,
        )
    )
    assert len(starts) == 12
    # Never more than the bucket allowed by then. A `started` event is written just after
    # its token was taken, so the first token may precede the first event by a little.
    for count, at in enumerate(starts, 1):
        allowed = rate.burst + rate.per_s * ((at - starts[0]).total_seconds() + TOKEN_LAG_S)
        assert count <= allowed + 1e-6, (count, allowed)
    queues = (await client.get("/queues")).json()["queues"]
    assert "rate_limits" in next(q for q in queues if q["queue"] == "rated")


# --- the round robin ------------------------------------------------------------------------


async def test_a_tenants_backlog_does_not_delay_another_tenants_job(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    queue_name = f"fair-{uuid.uuid4().hex[:6]}"  # no worker consumes it: the test claims
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))

    def request(tenant: str, fields: KeyedFields | None = None) -> JobRequest:
        return JobRequest(
            task="noop",
            args={},
            queue=queue_name,
            max_attempts=1,
            timeout_s=60,
            tenant=tenant,
            keys=fields or KeyedFields(),
        )

    await submitter.submit_many([request("big")] * 200)
    late = await submitter.submit(request("small"))
    assert late is not None
    claimed = await jobs.claim_jobs(
        pool, queue=queue_name, worker_id="w", limits={}, count=2, tasks=["noop"]
    )
    assert late.row["id"] in [row["id"] for row in claimed]
    # Turn by turn afterwards: with a third tenant, every tenant waits one job per other.
    await submitter.submit_many([request("small")] * 5 + [request("third")] * 5)
    tenants = [
        row["job_tenant"]
        for _ in range(9)
        for row in await jobs.claim_jobs(
            pool, queue=queue_name, worker_id="w", limits={}, count=1, tasks=["noop"]
        )
    ]
    assert sorted(tenants[:3]) == ["big", "small", "third"], tenants
    assert sorted(tenants[3:6]) == ["big", "small", "third"], tenants


async def test_a_pass_claims_on_while_a_rivals_job_is_held_by_another_claimer(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    queue_name = f"fair-{uuid.uuid4().hex[:6]}"  # no worker consumes it: the test claims
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))

    def request(tenant: str) -> JobRequest:
        return JobRequest("noop", {}, queue_name, max_attempts=1, timeout_s=60, tenant=tenant)

    big = await submitter.submit_many([request("big")] * 5)
    small = await submitter.submit(request("small"))
    assert small is not None
    async with pool.acquire() as other, other.transaction():
        # Another claimer's pass holds the small tenant's only job, not yet committed.
        await other.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", small.row["id"])
        claimed = await jobs.claim_jobs(
            pool, queue=queue_name, worker_id="w", limits={}, count=4, tasks=["noop"]
        )
        # Submitted together, the big tenant's jobs tie on age: any four of them.
        assert len(claimed) == 4
        assert {row["id"] for row in claimed} <= {row["id"] for row in big}
    # Released (that pass rolled back), it is next: its tenant waited, the other was served.
    [first] = await jobs.claim_jobs(
        pool, queue=queue_name, worker_id="w", limits={}, count=1, tasks=["noop"]
    )
    assert first["id"] == small.row["id"]


async def test_fair_tasks_take_turns_across_their_keys_within_a_tenant(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    queue_name = f"fair-{uuid.uuid4().hex[:6]}"
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))

    def request(key: str) -> JobRequest:
        fields = KeyedFields(concurrency_key=scoped_key("t", key), max_per_key=100, fair_key=key)
        return JobRequest(
            task="noop",
            args={},
            queue=queue_name,
            max_attempts=1,
            timeout_s=60,
            tenant="t",
            keys=fields,
        )

    await submitter.submit_many([request("a")] * 50 + [request("b")] * 2)
    claimed = await jobs.claim_jobs(
        pool, queue=queue_name, worker_id="w", limits={}, count=4, tasks=["noop"]
    )
    keys = [
        await pool.fetchval("SELECT fair_key FROM jobs WHERE id = $1", row["id"]) for row in claimed
    ]
    assert keys.count("b") == 2, keys


async def test_priorities_still_come_before_turns(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    queue_name = f"fair-{uuid.uuid4().hex[:6]}"
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))

    def request(tenant: str, priority: int) -> JobRequest:
        return JobRequest(
            task="noop",
            args={},
            queue=queue_name,
            max_attempts=1,
            timeout_s=60,
            tenant=tenant,
            priority=priority,
        )

    await submitter.submit_many([request("a", 5)] * 3 + [request("b", 0)])
    claimed = await jobs.claim_jobs(
        pool, queue=queue_name, worker_id="w", limits={}, count=4, tasks=["noop"]
    )
    assert [row["job_tenant"] for row in claimed] == ["a", "a", "a", "b"]


async def test_queues_show_keys_with_their_running_counts(
    client: httpx.AsyncClient,
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    ids = [
        (await submit(client, "export", args={"customer_id": customer, "gate": gate}))["id"]
        for _ in range(3)
    ]

    async def key_row() -> dict[str, Any] | None:
        queues = (await client.get("/queues")).json()["queues"]
        keyed = [q for q in queues if q["queue"] == "keyed"]
        rows = [k for k in keyed[0]["concurrency_keys"] if k["key"] == customer] if keyed else []
        return rows[0] if rows and rows[0]["running"] == 2 else None

    row = await until(key_row, WITHIN_S)
    assert row == {"key": customer, "running": 2, "waiting": 1, "max_per_key": 2}
    gates.open(gate)
    await until(lambda: all_ended(client, ids), WITHIN_S)


async def test_metrics_count_jobs_waiting_for_a_key_and_rate_refusals(
    settings: Settings, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    gate, customer = gate_name(), f"c-{uuid.uuid4().hex[:6]}"
    ids = [
        (await submit(client, "export", args={"customer_id": customer, "gate": gate}))["id"]
        for _ in range(3)
    ]
    await until(lambda: _is(client, ids[1], "running"), WITHIN_S)
    bucket = f"m-{uuid.uuid4().hex[:6]}"
    taken = [await pool.fetchval("SELECT take_rate_token($1, 1, 1e-4)", bucket) for _ in range(2)]
    assert taken == [True, False]
    # A server of its own, so its first scrape (and cache fill) comes after the above.
    async with start_server(settings) as handle:
        metrics = await scrape(f"{handle.url}/metrics")
    assert metrics[("tidings_jobs_waiting_for_key", (("queue", "keyed"),))] >= 1
    assert metrics[("tidings_rate_limited_total", ())] >= 1
    gates.open(gate)
    await until(lambda: all_ended(client, ids), WITHIN_S)
