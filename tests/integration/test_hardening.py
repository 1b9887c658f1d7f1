"""Findings of the hostile-input review, each reproduced: what used to break, and now holds.

Each test sends what the review sent. Before the fix, the first answered 500 with a
Postgres error, the second put SQL in a 409 body, the third accepted an integer no task
could ever report back, the fourth printed a traceback instead of one line, the fifth
counted other tenants' jobs into a job's ETA, the sixth let another site's page submit
jobs to an auth-off server, and the last logged a client that left mid-body as a crash.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import structlog

from tests.support.api import until
from tests.support.paths import REPO_ROOT
from tests.support.servers import ServerHandle, WorkerHandle, settings_env
from tidings.core import queue
from tidings.core.db import jobs
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter
from tidings.server.metrics import MAX_LABEL_VALUES, OTHER

PARKED = "parked"  # no worker consumes it


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def test_an_idempotency_key_header_longer_than_the_field_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    for key, length in (("k" * 201, 201), ("k" * 5000, 5000)):
        response = await client.post(
            "/jobs", json={"task": "noop", "queue": PARKED}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 422, response.text
        details = response.json()["error"]["details"]
        assert details["field"] == "header.Idempotency-Key"
        assert str(length) in details["reason"]
    at_the_limit = await client.post(
        "/jobs", json={"task": "noop", "queue": PARKED}, headers={"Idempotency-Key": "k" * 200}
    )
    assert at_the_limit.status_code == 202, at_the_limit.text
    # An empty header is no key, as before (a proxy may send one).
    empty = await client.post(
        "/jobs", json={"task": "noop", "queue": PARKED}, headers={"Idempotency-Key": ""}
    )
    assert empty.status_code == 202, empty.text


async def test_a_batch_whose_key_is_taken_says_so_without_sql(client: httpx.AsyncClient) -> None:
    job = {"task": "noop", "queue": PARKED, "idempotency_key": "taken-by-a-batch"}
    assert (await client.post("/jobs", json=job)).status_code == 202
    response = await client.post("/jobs/batch", json={"jobs": [job]})
    assert response.status_code == 409, response.text
    body = response.text
    assert "Key (" not in body and "already exists" not in body and "tenant," not in body
    assert response.json()["error"]["code"] == "idempotency_conflict"


async def test_an_integer_wider_than_64_bits_is_refused_at_submit(
    client: httpx.AsyncClient,
) -> None:
    for steps in (2**70, -(2**64)):
        response = await client.post(
            "/jobs", json={"task": "sleep_steps", "queue": PARKED, "args": {"steps": steps}}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"]["field"] == "args.steps"
    widest = await client.post(
        "/jobs", json={"task": "sleep_steps", "queue": PARKED, "args": {"steps": 2**63 - 1}}
    )
    assert widest.status_code == 202, widest.text


@pytest.mark.parametrize("module", ["tidings.server", "tidings.worker"])
async def test_settings_no_process_can_run_with_are_one_line_and_exit_2(
    settings: Settings, module: str
) -> None:
    env = settings_env(settings) | {"TIDINGS_AUTH": "off", "TIDINGS_HOST": "0.0.0.0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert lines == [
        "tidings: TIDINGS_AUTH=off is only allowed when TIDINGS_HOST is a loopback address"
    ]
    assert out == b""


async def test_a_waiting_jobs_eta_counts_only_its_own_tenants_jobs_ahead(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Another tenant's backlog rising and falling must not show in this tenant's ETA."""
    redis = await queue.connect(settings.redis_url)
    try:
        submitter = Submitter(pool, redis, queue.Names(settings.namespace))

        async def waiting(tenant: str) -> asyncpg.Record:
            request = JobRequest(
                task="noop",
                args={},
                queue="eta-isolation",
                max_attempts=1,
                timeout_s=60,
                tenant=tenant,
            )
            submitted = await submitter.submit(request)
            assert submitted is not None
            return submitted.row

        async def ahead_of(row: asyncpg.Record) -> int:
            inputs = await jobs.eta_inputs(
                pool,
                task=row["task"],
                queue=row["queue"],
                priority=row["priority"],
                run_at=row["run_at"],
                created_at=row["created_at"],
                live_within_s=60.0,
                tenant=row["tenant"],
            )
            return int(inputs["ahead"])

        mine_first = await waiting("mine")
        for _ in range(5):
            await waiting("theirs")
        mine_later = await waiting("mine")
        assert await ahead_of(mine_later) == 1  # only `mine_first`, not the five of theirs
        assert await ahead_of(mine_first) == 0
    finally:
        await redis.aclose()


async def test_with_auth_off_another_sites_page_cannot_submit(
    client: httpx.AsyncClient, server: ServerHandle
) -> None:
    """The review's page: fetch(…, {mode: "no-cors", headers: {"Content-Type": "text/plain"}})
    with a JSON body, sent by a browser from another origin, and a rebinding name."""
    job = b'{"task": "noop", "queue": "parked"}'
    cross_site = await client.post(
        "/jobs",
        content=job,
        headers={"content-type": "text/plain;charset=UTF-8", "origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403, cross_site.text
    assert cross_site.json()["error"]["details"]["field"] == "header.Origin"
    # Without an Origin (not a browser's cross-site request), text/plain is still not JSON.
    plain = await client.post("/jobs", content=job, headers={"content-type": "text/plain"})
    assert plain.status_code == 415, plain.text
    assert plain.json()["error"]["code"] == "unsupported_media_type"
    rebound = await client.get("/jobs", headers={"host": "evil.example:8000"})
    assert rebound.status_code == 403, rebound.text
    assert rebound.json()["error"]["details"]["field"] == "header.Host"
    # The server's own pages, and clients that send no Origin, go on as before.
    own_origin = server.url.replace("localhost", "127.0.0.1")
    same_site = await client.post(
        "/jobs", content=job, headers={"content-type": "application/json", "origin": own_origin}
    )
    assert same_site.status_code == 202, same_site.text
    assert (await client.get("/jobs", headers={"host": "localhost"})).status_code == 200


async def test_a_client_that_leaves_mid_body_is_an_abort_not_a_crash(
    client: httpx.AsyncClient, server: ServerHandle
) -> None:
    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        host, port = server.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"task": "no'
        )
        await writer.drain()
        writer.close()  # gone, 988 bytes short
        await writer.wait_closed()

        async def logged() -> bool:  # when the server sees the disconnect; nothing signals it
            return any(entry["event"] == "http.request" for entry in capture.entries)

        await until(logged, 10)
    finally:
        structlog.configure(**previous)
    events = [entry["event"] for entry in capture.entries]
    assert "request.crashed" not in events
    assert "request.aborted" in events
    [line] = [entry for entry in capture.entries if entry["event"] == "http.request"]
    assert line["status"] == 499
    exposition = (await client.get("/metrics")).text
    assert 'route="/jobs",status="500"' not in exposition
    assert 'method="POST",route="/jobs",status="499"' in exposition


async def test_queue_names_are_short_and_plain(client: httpx.AsyncClient) -> None:
    for name in ("has space", "x" * 65, "emoji-🙂", "semi;colon", ""):
        response = await client.post("/jobs", json={"task": "noop", "queue": name})
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["details"]["field"] == "body.queue"
    for name in ("x" * 64, "reports.v2:eu-west_1"):
        response = await client.post("/jobs", json={"task": "noop", "queue": name})
        assert response.status_code == 202, (name, response.text)


async def test_tenant_chosen_queue_names_cannot_grow_the_metrics_without_bound(
    client: httpx.AsyncClient,
) -> None:
    """The review's batches of jobs on distinct queues, each a new series in every scrape."""
    jobs = [{"task": "noop", "queue": f"q{index:04d}"} for index in range(MAX_LABEL_VALUES + 50)]
    response = await client.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    exposition = (await client.get("/metrics")).text
    submitted = [
        line for line in exposition.splitlines() if line.startswith("tidings_jobs_submitted_total{")
    ]
    queues = {line.split('queue="')[1].split('"')[0] for line in submitted}
    assert len(queues) <= MAX_LABEL_VALUES + 1
    assert OTHER in queues
