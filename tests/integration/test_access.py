"""Access control: API keys per tenant, scoped stream tokens, limits, and what never leaks.

The real server with `TIDINGS_AUTH=keys`, keys made with `core.keys.create_key` in the
module's database. Tenant `alice` owns the jobs under attack; tenant `bob` tries every
way in. A refused request must also change nothing: the jobs' rows and event rows are
compared before and after. Each wait is a bounded loop on something observable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
import structlog
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import stream_kinds, submit
from tests.support.servers import ServerHandle, WorkerHandle, start_server
from tests.support.sse import job_events
from tidings.core import keys, queue
from tidings.core.events import TERMINAL_KINDS
from tidings.core.settings import Settings, SettingsError
from tidings.server.tokens import StreamTokens
from tidings.worker import Job, task

SECRET = "access-test-secret-" + "s" * 32
OPERATOR_TOKEN = "operator-token-for-tests"
OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
WITHIN_S = 10.0
MISSING_JOB = "00000000-0000-4000-8000-000000000000"
# No worker consumes this queue: jobs sent there stay queued (cancellable) for good.
PARKED = "parked"
CHALLENGE = 'Bearer realm="tidings"'
# This test's own HTTP client logs the URLs it requests. uvicorn's access log (request
# lines with query strings) is off in the server (`access_log=False`), but pytest attaches
# its capture handler to non-propagating loggers, which turns it back on under test; the
# fuzz test checks the real server process's output for the key and a token instead.
NOT_THE_SERVERS_LOGS = {"httpx", "httpcore.connection", "httpcore.http11", "uvicorn.access"}

Snapshot = tuple[dict[str, Any], list[dict[str, Any]]]


@task
async def takes_any_json(job: Job, data: Any = None) -> None:
    """Accepts any JSON at all, as many real tasks' `dict[str, Any]` args do."""


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """Keys on; the worker also registers `takes_any_json` from this module."""
    return replace(
        settings,
        auth="keys",
        secret=SECRET,
        operator_token=OPERATOR_TOKEN,
        tasks=(*settings.tasks, __name__),
    )


# --- keys, clients and jobs -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def alice_key(pool: asyncpg.Pool) -> keys.NewKey:
    return await keys.create_key(pool, "alice", "ci")


@pytest.fixture(scope="module")
async def bob_key(pool: asyncpg.Pool) -> keys.NewKey:
    return await keys.create_key(pool, "bob", "ci")


def bearer(key: keys.NewKey) -> dict[str, str]:
    return {"authorization": f"Bearer {key.secret}"}


@pytest.fixture(scope="module")
async def alice(
    server: ServerHandle, worker: WorkerHandle, alice_key: keys.NewKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.url, headers=bearer(alice_key), timeout=WITHIN_S
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def bob(
    server: ServerHandle, worker: WorkerHandle, bob_key: keys.NewKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.url, headers=bearer(bob_key), timeout=WITHIN_S
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def anonymous(server: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


async def run_to_end(client: httpx.AsyncClient, task: str, **fields: Any) -> dict[str, Any]:
    """Submit a job and follow its stream to the terminal event; returns the job JSON."""
    job = await submit(client, task, **fields)
    async with asyncio.timeout(WITHIN_S):
        kinds = await stream_kinds(client, job["id"])
    assert kinds[-1] in TERMINAL_KINDS
    response = await client.get(f"/jobs/{job['id']}")
    assert response.status_code == 200
    finished: dict[str, Any] = response.json()
    return finished


@pytest.fixture(scope="module")
async def parked_job(alice: httpx.AsyncClient) -> dict[str, Any]:
    """Alice's job that stays queued: a cancel by anyone allowed would cancel it."""
    return await submit(alice, "noop", queue=PARKED)


@pytest.fixture(scope="module")
async def failed_job(alice: httpx.AsyncClient) -> dict[str, Any]:
    """Alice's failed job: a retry by anyone allowed would queue it again."""
    job = await run_to_end(alice, "fail")
    assert job["status"] == "failed"
    return job


@pytest.fixture(scope="module")
async def bobs_job(bob: httpx.AsyncClient) -> dict[str, Any]:
    return await submit(bob, "noop", queue=PARKED)


async def snapshot(pool: asyncpg.Pool, job_id: str) -> Snapshot:
    """The job's row and every event row, exactly as stored."""
    row = await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", uuid.UUID(job_id))
    assert row is not None
    events = await pool.fetch(
        "SELECT * FROM job_history WHERE job_id = $1 ORDER BY seq", uuid.UUID(job_id)
    )
    return dict(row), [dict(event) for event in events]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`response` is the JSON error `status`/`code`, with the security headers; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    assert_security_headers(response)
    error: dict[str, Any] = body["error"]
    return error


def assert_unauthorized(response: httpx.Response) -> None:
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == CHALLENGE


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def token_of(link: str) -> str:
    """The `token` query parameter of a `links.events` URL."""
    return parse_qs(urlsplit(link).query)["token"][0]


# --- auth mode --------------------------------------------------------------------------------


def test_keys_are_the_default_auth_mode() -> None:
    assert Settings().auth == "keys"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_auth_off_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(SettingsError, match="loopback"):
        Settings(auth="off", host=host).validate()
    with pytest.raises(SettingsError, match="loopback"):
        Settings.from_env({"TIDINGS_AUTH": "off", "TIDINGS_HOST": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_auth_off_is_allowed_on_loopback(host: str) -> None:
    Settings(auth="off", host=host).validate()


def test_keys_may_bind_any_address() -> None:
    Settings(auth="keys", host="0.0.0.0").validate()


# --- who may ask ------------------------------------------------------------------------------


PROTECTED = [
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("POST", "/jobs/batch"),
    ("GET", f"/jobs/{MISSING_JOB}"),
    ("GET", f"/jobs/{MISSING_JOB}/events"),
    ("POST", f"/jobs/{MISSING_JOB}/cancel"),
    ("POST", f"/jobs/{MISSING_JOB}/retry"),
    ("GET", "/events"),
    ("GET", "/tasks"),
    ("GET", "/workers"),
    ("GET", "/queues"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_a_request_without_a_key_is_401_with_a_challenge(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await anonymous.request(method, path, json={"task": "noop"})
    assert_unauthorized(response)


async def test_every_operation_the_document_secures_refuses_a_missing_key(
    anonymous: httpx.AsyncClient,
) -> None:
    document = (await anonymous.get("/openapi.json")).json()
    secured = [
        (method, path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security", document["security"])
    ]
    assert ("post", "/jobs") in secured
    for method, path in secured:
        response = await anonymous.request(method, path.replace("{job_id}", MISSING_JOB))
        assert response.status_code == 401, (method, path, response.text)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs", "/favicon.ico"])
async def test_public_paths_need_no_key(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200, response.text
    assert_security_headers(response)


def malformed_headers(key: str) -> dict[str, dict[str, str | bytes]]:
    """Authorization headers that must not authenticate, though some hold the real key."""
    lookup = "_".join(key.split("_")[:2])
    flipped = key[:-3] + ("A" if key[-3] != "A" else "B") + key[-2:]
    return {
        "scheme-only": {"authorization": "Bearer"},
        "basic-scheme": {"authorization": "Basic " + base64.b64encode(b"alice:pw").decode()},
        "token-scheme-real-key": {"authorization": f"Token {key}"},
        "no-scheme-real-key": {"authorization": key},
        "unknown-key": {"authorization": f"Bearer tdk_00000000_{'x' * 43}"},
        "lookup-prefix-only": {"authorization": f"Bearer {lookup}"},
        "one-char-changed": {"authorization": f"Bearer {flipped}"},
        "key-with-suffix": {"authorization": f"Bearer {key}x"},
        "key-in-x-api-key": {"x-api-key": key},
        "not-utf8": {"authorization": b"Bearer \xff\xfe" + key.encode()},
    }


MALFORMED_CASES = list(malformed_headers("tdk_12345678_" + "k" * 43))


@pytest.mark.parametrize("case", MALFORMED_CASES)
async def test_a_malformed_or_unknown_key_is_401(
    anonymous: httpx.AsyncClient, alice_key: keys.NewKey, case: str
) -> None:
    headers = malformed_headers(alice_key.secret)[case]
    assert_unauthorized(await anonymous.get("/jobs", headers=headers))


async def test_the_key_in_the_url_is_not_accepted(
    anonymous: httpx.AsyncClient, alice_key: keys.NewKey, parked_job: dict[str, Any]
) -> None:
    for name in ("api_key", "key", "token"):
        assert_unauthorized(await anonymous.get("/jobs", params={name: alice_key.secret}))
    # Not even on the one path that takes a `?token=`: an API key is not a stream token.
    response = await anonymous.get(
        f"/jobs/{parked_job['id']}/events",
        params={"token": alice_key.secret},
        headers={"accept": "application/json"},
    )
    assert_unauthorized(response)


async def test_the_scheme_is_case_insensitive(
    anonymous: httpx.AsyncClient, alice_key: keys.NewKey
) -> None:
    response = await anonymous.get("/jobs", headers={"authorization": f"bearer {alice_key.secret}"})
    assert response.status_code == 200, response.text


async def test_a_revoked_key_is_refused_on_the_very_next_request(
    anonymous: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    key = await keys.create_key(pool, "carol", "laptop")
    assert (await anonymous.get("/jobs", headers=bearer(key))).status_code == 200
    assert await keys.revoke_key(pool, key.id)
    assert_unauthorized(await anonymous.get("/jobs", headers=bearer(key)))
    assert_unauthorized(await anonymous.post("/jobs", headers=bearer(key), json={"task": "noop"}))
    listed = {row["id"]: dict(row) for row in await keys.list_keys(pool, "carol")}
    assert listed[key.id]["revoked_at"] is not None
    assert "digest" not in listed[key.id]


async def test_keys_are_stored_only_as_digests(pool: asyncpg.Pool, alice_key: keys.NewKey) -> None:
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", alice_key.id)
    assert row is not None
    assert bytes(row["digest"]) == keys.digest(alice_key.secret)
    stored = " ".join(str(value) for value in row.values())
    assert alice_key.secret not in stored
    assert alice_key.secret.split("_", 2)[2] not in stored


# --- tenants --------------------------------------------------------------------------------


async def without_streaming(
    client: httpx.AsyncClient, method: str, path: str, accept: str
) -> httpx.Response:
    """The response, read in full; an event stream (which might never end) fails at once."""
    async with client.stream(method, path, headers={"accept": accept}) as response:
        content_type = response.headers["content-type"]
        assert not content_type.startswith("text/event-stream"), f"{path} opened a stream"
        await response.aread()
    return response


CROSS_TENANT = {
    "read": ("GET", "/jobs/{id}", "application/json"),
    "stream": ("GET", "/jobs/{id}/events", "text/event-stream"),
    "history": ("GET", "/jobs/{id}/events", "application/json"),
    "cancel": ("POST", "/jobs/{id}/cancel", "application/json"),
    "retry": ("POST", "/jobs/{id}/retry", "application/json"),
}


@pytest.mark.parametrize("which", ["parked", "failed"])
@pytest.mark.parametrize("operation", list(CROSS_TENANT))
async def test_another_tenants_job_is_a_404_and_stays_untouched(
    bob: httpx.AsyncClient,
    alice: httpx.AsyncClient,
    pool: asyncpg.Pool,
    parked_job: dict[str, Any],
    failed_job: dict[str, Any],
    which: str,
    operation: str,
) -> None:
    # A parked job is one a cancel would change; a failed one, one a retry would.
    job = {"parked": parked_job, "failed": failed_job}[which]
    method, template, accept = CROSS_TENANT[operation]
    before = await snapshot(pool, job["id"])

    response = await without_streaming(bob, method, template.format(id=job["id"]), accept)
    missing = await without_streaming(bob, method, template.format(id=MISSING_JOB), accept)

    error = assert_error(response, 404, "not_found")
    # Indistinguishable from a job that does not exist at all.
    assert error == {
        **assert_error(missing, 404, "not_found"),
        "message": missing.json()["error"]["message"].replace(MISSING_JOB, job["id"]),
    }
    assert await snapshot(pool, job["id"]) == before
    assert (await alice.get(f"/jobs/{job['id']}")).status_code == 200


async def test_a_list_never_shows_another_tenants_jobs(
    alice: httpx.AsyncClient,
    bob: httpx.AsyncClient,
    pool: asyncpg.Pool,
    parked_job: dict[str, Any],
    failed_job: dict[str, Any],
    bobs_job: dict[str, Any],
) -> None:
    alices = {parked_job["id"], failed_job["id"]}
    bobs = {str(row["id"]) for row in await pool.fetch("SELECT id FROM jobs WHERE tenant = 'bob'")}
    assert bobs_job["id"] in bobs
    queries: list[dict[str, str]] = [
        {},
        {"limit": "500"},
        {"status": "queued"},
        {"status": "failed"},
        {"task": "noop"},
        {"task": "fail"},
        {"queue": PARKED},
        {"queue": "default"},
        {"id_prefix": parked_job["id"][:6]},
        {"id_prefix": failed_job["id"]},
        {"id_prefix": bobs_job["id"][:8]},
    ]
    for query in queries:
        for client, others in ((bob, alices), (alice, bobs)):
            response = await client.get("/jobs", params=query)
            assert response.status_code == 200, response.text
            listed = {job["id"] for job in response.json()["jobs"]}
            assert not listed & others, query
    # Everything Bob has, and nothing else; Alice sees hers.
    assert {
        job["id"] for job in (await bob.get("/jobs", params={"limit": "500"})).json()["jobs"]
    } == bobs
    assert alices <= {job["id"] for job in (await alice.get("/jobs")).json()["jobs"]}


async def test_an_id_prefix_finds_only_the_callers_job(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, parked_job: dict[str, Any]
) -> None:
    prefix = {"id_prefix": parked_job["id"][:8]}
    assert [job["id"] for job in (await alice.get("/jobs", params=prefix)).json()["jobs"]] == [
        parked_job["id"]
    ]
    response = await bob.get("/jobs", params=prefix)
    assert response.status_code == 200, response.text
    assert response.json()["jobs"] == []
    too_short = await alice.get("/jobs", params={"id_prefix": parked_job["id"][:5]})
    assert_error(too_short, 422, "invalid_query")


async def test_queue_depths_count_only_the_callers_jobs(
    bob: httpx.AsyncClient,
    pool: asyncpg.Pool,
    parked_job: dict[str, Any],
    bobs_job: dict[str, Any],
) -> None:
    mine = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE tenant = 'bob' AND queue = $1 AND status = 'queued'",
        PARKED,
    )
    everyone = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE queue = $1 AND status = 'queued'", PARKED
    )
    assert everyone > mine >= 1
    queues = {row["queue"]: row for row in (await bob.get("/queues")).json()["queues"]}
    assert queues[PARKED]["due"] == mine


async def test_an_idempotency_key_is_per_tenant(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    shared = f"order-{uuid.uuid4()}"
    alices = await submit(alice, "noop", queue=PARKED, idempotency_key=shared)
    # Bob reusing the key (even with another body) neither gets Alice's job nor a 409.
    bobs = await submit(bob, "noop", queue="elsewhere", idempotency_key=shared)
    assert bobs["id"] != alices["id"]
    again = await alice.post(
        "/jobs", json={"task": "noop", "queue": PARKED, "idempotency_key": shared}
    )
    assert (again.status_code, again.json()["id"]) == (200, alices["id"])


class Feed:
    """A `/events` stream read step by step."""

    def __init__(self, source: EventSource) -> None:
        self._events = source.aiter_sse()
        self.seen: list[dict[str, Any]] = []

    async def until_terminal(self, job_id: str) -> list[str]:
        """Read until `job_id`'s terminal event; returns that job's event kinds."""
        async with asyncio.timeout(WITHIN_S):
            while True:
                sse: ServerSentEvent = await anext(self._events)
                if not sse.data or sse.event == "resync":
                    continue
                event = sse.json()
                self.seen.append(event)
                if event["job_id"] == job_id and event["kind"] in TERMINAL_KINDS:
                    return [seen["kind"] for seen in self.seen if seen["job_id"] == job_id]


async def open_streams(client: httpx.AsyncClient) -> float:
    """Streams (and hub subscriptions) open on the server now, from its metrics."""
    response = await client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        if family.name == "tidings_sse_streams":
            return float(family.samples[0].value)
    raise AssertionError("no tidings_sse_streams gauge")


async def until_open_streams(client: httpx.AsyncClient, expected: int) -> None:
    async with asyncio.timeout(WITHIN_S):
        while True:
            if await open_streams(client) == expected:
                return
            await asyncio.sleep(0.01)


async def test_the_events_feed_carries_only_the_callers_jobs(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    # Alice opens hers with the tenant-wide token from her job list, as a browser would.
    feed_link = (await alice.get("/jobs")).json()["events"]
    assert urlsplit(feed_link).path == "/events"
    async with (
        aconnect_sse(anonymous, "GET", feed_link) as alices_source,
        aconnect_sse(bob, "GET", "/events") as bobs_source,
    ):
        assert alices_source.response.status_code == bobs_source.response.status_code == 200
        # Both subscriptions exist before any job below is submitted.
        await until_open_streams(anonymous, 2)
        alices_feed, bobs_feed = Feed(alices_source), Feed(bobs_source)
        alices = await submit(alice, "noop")
        assert await alices_feed.until_terminal(alices["id"]) == ["queued", "started", "succeeded"]
        # Alice's events have passed the server's hub, and so reached Bob's subscription
        # too, before Bob's job exists: had they leaked, they would come first.
        bobs = await submit(bob, "noop")
        assert await bobs_feed.until_terminal(bobs["id"]) == ["queued", "started", "succeeded"]
    assert {event["job_id"] for event in bobs_feed.seen} == {bobs["id"]}
    assert {event["tenant"] for event in bobs_feed.seen} == {"bob"}
    assert {event["tenant"] for event in alices_feed.seen} == {"alice"}
    await until_open_streams(anonymous, 0)


# --- stream tokens ----------------------------------------------------------------------------


async def test_a_jobs_events_link_opens_its_stream_without_a_key(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    job = await submit(alice, "sleep_steps", args={"steps": 3, "delay_s": 0.01})
    link = job["links"]["events"]
    assert urlsplit(link).path == f"/jobs/{job['id']}/events" and token_of(link)
    async with asyncio.timeout(WITHIN_S), aconnect_sse(anonymous, "GET", link) as source:
        assert "authorization" not in source.response.request.headers
        assert source.response.status_code == 200
        assert_security_headers(source.response)
        events = [(seq, kind) async for seq, kind, _ in job_events(source)]
    kinds = ["queued", "started", "progress", "progress", "progress", "succeeded"]
    assert events == list(enumerate(kinds, start=1))
    # The same token reads the JSON history too.
    response = await anonymous.get(link, headers={"accept": "application/json"})
    assert response.status_code == 200, response.text
    assert [event["seq"] for event in response.json()["events"]] == [1, 2, 3, 4, 5, 6]


async def test_every_job_in_a_list_carries_its_own_token(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient, parked_job: dict[str, Any]
) -> None:
    listed = {job["id"]: job for job in (await alice.get("/jobs")).json()["jobs"]}
    link = listed[parked_job["id"]]["links"]["events"]
    response = await anonymous.get(link, headers={"accept": "application/json"})
    assert response.status_code == 200, response.text
    assert [event["kind"] for event in response.json()["events"]] == ["queued"]


def events_path(job_id: str) -> str:
    return f"/jobs/{job_id}/events"


async def get_history(client: httpx.AsyncClient, job_id: str, token: str) -> httpx.Response:
    return await client.get(
        events_path(job_id), params={"token": token}, headers={"accept": "application/json"}
    )


async def test_a_token_for_another_job_is_401(
    anonymous: httpx.AsyncClient, parked_job: dict[str, Any], failed_job: dict[str, Any]
) -> None:
    token = token_of(failed_job["links"]["events"])
    assert (await get_history(anonymous, failed_job["id"], token)).status_code == 200
    assert_unauthorized(await get_history(anonymous, parked_job["id"], token))
    assert_unauthorized(await get_history(anonymous, MISSING_JOB, token))


async def test_tokens_for_the_feed_and_for_a_job_do_not_stand_in_for_each_other(
    alice: httpx.AsyncClient, anonymous: httpx.AsyncClient, parked_job: dict[str, Any]
) -> None:
    feed_token = token_of((await alice.get("/jobs")).json()["events"])
    assert_unauthorized(await get_history(anonymous, parked_job["id"], feed_token))
    job_token = token_of(parked_job["links"]["events"])
    assert_unauthorized(await anonymous.get("/events", params={"token": job_token}))


async def test_an_expired_token_is_401(
    anonymous: httpx.AsyncClient, failed_job: dict[str, Any], settings: Settings
) -> None:
    def signer(now: float) -> StreamTokens:
        return StreamTokens(settings.secret.encode(), ttl_s=60, clock=lambda: now)

    # The control: signed the same way a minute ago, it still works.
    fresh = signer(time.time() - 55).issue(failed_job["id"], "alice")
    assert (await get_history(anonymous, failed_job["id"], fresh)).status_code == 200
    expired = signer(time.time() - 3600).issue(failed_job["id"], "alice")
    assert_unauthorized(await get_history(anonymous, failed_job["id"], expired))


def flip(text: str, index: int) -> str:
    """`text` with one base64url character changed (never the last: its low bits are padding)."""
    return text[:index] + ("B" if text[index] == "A" else "A") + text[index + 1 :]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_a_tampered_token_is_401(
    anonymous: httpx.AsyncClient, failed_job: dict[str, Any]
) -> None:
    token = token_of(failed_job["links"]["events"])
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["t"] == "alice"
    forged_tenant = b64(json.dumps({**claims, "t": "bob"}).encode())
    forged_expiry = b64(json.dumps({**claims, "e": claims["e"] + 10**6}).encode())
    for tampered in (
        f"{flip(payload, 3)}.{signature}",
        f"{payload}.{flip(signature, 3)}",
        f"{forged_tenant}.{signature}",
        f"{forged_expiry}.{signature}",
        f"{payload}.",
        payload,
        f"{payload}.{signature}.{signature}",
    ):
        assert_unauthorized(await get_history(anonymous, failed_job["id"], tampered))


async def test_a_token_opens_nothing_but_its_jobs_events(
    anonymous: httpx.AsyncClient, pool: asyncpg.Pool, parked_job: dict[str, Any]
) -> None:
    token = token_of(parked_job["links"]["events"])
    job_id = parked_job["id"]
    before = await snapshot(pool, job_id)
    for method, path in [
        ("GET", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("POST", f"/jobs/{job_id}/retry"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/tasks"),
        ("GET", "/queues"),
        ("GET", f"/jobs/{job_id}/events/"),
        ("GET", f"/jobs/{job_id}/events/x"),
    ]:
        response = await anonymous.request(
            method, path, params={"token": token}, json={"task": "noop"}
        )
        assert_unauthorized(response)
    assert await snapshot(pool, job_id) == before
    assert before[0]["status"] == "queued"


# --- limits ---------------------------------------------------------------------------------


async def test_past_the_request_rate_a_key_gets_429_then_recovers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    limited = replace(settings, rate_limit_per_s=1, rate_limit_burst=3)
    key, other = [await keys.create_key(pool, "dave", name) for name in ("a", "b")]
    async with (
        start_server(limited) as handle,
        httpx.AsyncClient(base_url=handle.url, timeout=WITHIN_S) as client,
    ):
        for _ in range(3):
            assert (await client.get("/jobs", headers=bearer(key))).status_code == 200
        refused = await client.get("/jobs", headers=bearer(key))
        error = assert_error(refused, 429, "rate_limited")
        assert "rate" in error["message"]
        assert refused.headers["retry-after"] == "1"
        # The bucket is the key's: another key (even of the same tenant) is not held back.
        assert (await client.get("/jobs", headers=bearer(other))).status_code == 200
        # Waiting as told is the behaviour under test, not a stand-in for a sync.
        await asyncio.sleep(int(refused.headers["retry-after"]))
        assert (await client.get("/jobs", headers=bearer(key))).status_code == 200


async def test_stream_slots_per_tenant_and_per_server(
    settings: Settings, pool: asyncpg.Pool, worker: WorkerHandle
) -> None:
    limited = replace(settings, max_streams=2, max_streams_per_tenant=1)
    erin, frank, grace = [await keys.create_key(pool, tenant, "ci") for tenant in ("e", "f", "g")]
    async with (
        start_server(limited) as handle,
        httpx.AsyncClient(base_url=handle.url, timeout=WITHIN_S) as client,
    ):
        erins = await submit_as(client, erin)
        franks = await submit_as(client, frank)
        graces = await submit_as(client, grace)
        sse = {"accept": "text/event-stream"}

        async with client.stream("GET", events_path(erins), headers=bearer(erin) | sse) as first:
            assert first.status_code == 200
            # A second stream of the same tenant, even of another kind, is refused ...
            second = await client.get(events_path(erins), headers=bearer(erin) | sse)
            assert_error(second, 429, "too_many_streams")
            assert int(second.headers["retry-after"]) > 0
            assert_error(await client.get("/events", headers=bearer(erin)), 429, "too_many_streams")
            # ... while the JSON history holds no slot, and another tenant streams freely.
            history = await client.get(
                events_path(erins), headers=bearer(erin) | {"accept": "application/json"}
            )
            assert history.status_code == 200
            async with client.stream(
                "GET", events_path(franks), headers=bearer(frank) | sse
            ) as franks_stream:
                assert franks_stream.status_code == 200
                # Two streams are all this server takes: a third tenant is told to go elsewhere.
                full = await client.get(events_path(graces), headers=bearer(grace) | sse)
                assert_error(full, 503, "too_many_streams")
                assert int(full.headers["retry-after"]) > 0

        # Closing the first stream gives its slot back (once the server sees the disconnect).
        async with asyncio.timeout(WITHIN_S):
            while True:
                async with client.stream(
                    "GET", events_path(erins), headers=bearer(erin) | sse
                ) as again:
                    if again.status_code == 200:
                        break
                    await again.aread()
                    assert_error(again, 429, "too_many_streams")
                await asyncio.sleep(0.01)


async def submit_as(client: httpx.AsyncClient, key: keys.NewKey) -> str:
    response = await client.post(
        "/jobs", headers=bearer(key), json={"task": "noop", "queue": PARKED}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def stored(pool: asyncpg.Pool) -> tuple[int, int]:
    return (
        await pool.fetchval("SELECT count(*) FROM jobs"),
        await pool.fetchval("SELECT count(*) FROM job_history"),
    )


async def test_an_oversized_body_is_413_and_stores_nothing(
    alice: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    before = await stored(pool)
    head, tail = b'{"task": "noop", "args": {"pad": "', b'"}}'
    body = head + b"x" * (settings.max_body_bytes + 1 - len(head) - len(tail)) + tail
    error = assert_error(await alice.post("/jobs", content=body), 413, "body_too_large")
    assert str(settings.max_body_bytes) in error["message"]
    assert await stored(pool) == before


async def test_oversized_args_are_413_and_store_nothing(
    alice: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    before = await stored(pool)
    big = {
        "task": "takes_any_json",
        "queue": PARKED,
        "args": {"data": "x" * settings.max_args_bytes},
    }
    assert len(json.dumps(big)) < settings.max_body_bytes
    error = assert_error(await alice.post("/jobs", json=big), 413, "args_too_large")
    assert error["details"]["field"] == "args"
    batch = await alice.post("/jobs/batch", json={"jobs": [{"task": "noop"}, big]})
    error = assert_error(batch, 422, "invalid_batch")
    assert [(item["index"], item["code"]) for item in error["details"]["errors"]] == [
        (1, "args_too_large")
    ]
    assert await stored(pool) == before


async def test_args_nested_deeper_than_can_be_stored_are_422_not_500(
    alice: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # orjson reads 1024 levels but writes only 254; the args are written again to be stored.
    before = await stored(pool)

    def body(depth: int) -> bytes:
        nested = b"[" * depth + b"]" * depth
        head = f'{{"task": "takes_any_json", "queue": "{PARKED}", "args": {{"data": '
        return head.encode() + nested + b"}}"

    error = assert_error(await alice.post("/jobs", content=body(300)), 422, "invalid_args")
    assert error["details"]["field"] == "args"
    assert "nest" in error["message"]
    assert await stored(pool) == before
    # The control: nesting that can be stored is.
    assert (await alice.post("/jobs", content=body(200))).status_code == 202


# --- what never leaks -------------------------------------------------------------------------


async def test_errors_and_logs_never_contain_keys_or_tokens(
    alice: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    pool: asyncpg.Pool,
    alice_key: keys.NewKey,
    parked_job: dict[str, Any],
    failed_job: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    revoked = await keys.create_key(pool, "alice", "old")
    await keys.revoke_key(pool, revoked.id)
    unknown = f"tdk_deadbeef_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    token = token_of(parked_job["links"]["events"])
    tampered = flip(token, 3)
    other_token = token_of(failed_job["links"]["events"])
    secrets = [alice_key.secret, revoked.secret, unknown, token, tampered, other_token]
    # The random part alone, in case something logs a key cut at the prefix.
    secrets += [alice_key.secret.split("_", 2)[2], token.split(".")[1]]

    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    caplog.set_level(logging.DEBUG)
    responses: list[httpx.Response] = []
    try:
        for key in (revoked.secret, unknown, f"{alice_key.secret}x", alice_key.secret[:-1]):
            responses.append(
                await anonymous.get("/jobs", headers={"authorization": f"Bearer {key}"})
            )
        job_id, other_id = parked_job["id"], failed_job["id"]
        headers = {"accept": "application/json"}
        for params in ({"token": tampered}, {"token": other_token}, {"token": alice_key.secret}):
            responses.append(
                await anonymous.get(events_path(job_id), params=params, headers=headers)
            )
        responses.append(await anonymous.get(f"/jobs/{job_id}", params={"token": token}))
        responses.append(await alice.get(f"/jobs/{MISSING_JOB}", params={"token": token}))
        responses.append(await alice.post(f"/jobs/{other_id}/cancel", params={"token": token}))
        # A secret pasted into the wrong place is not echoed back either.
        responses.append(await alice.post("/jobs", content=alice_key.secret.encode()))
        responses.append(
            await alice.post("/jobs", json={"task": "sleep_steps", "args": {"steps": token}})
        )
        responses.append(await alice.get("/jobs", params={"cursor": token}))
        # Successful requests log too: with the key in the header, the token in the URL.
        ok = await anonymous.get(events_path(job_id), params={"token": token}, headers=headers)
        assert ok.status_code == 200
        assert (await alice.get("/jobs")).status_code == 200
    finally:
        structlog.configure(**previous)

    assert all(response.status_code >= 400 for response in responses)
    for response in responses:
        assert "error" in response.json()
        exposed = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
        for secret in secrets:
            assert secret not in exposed, (response.request.url.path, response.text)
    logged = [repr(entry) for entry in capture.entries]
    server_side = [r for r in caplog.records if r.name not in NOT_THE_SERVERS_LOGS]
    logged += [f"{record.getMessage()} {record.__dict__!r}" for record in server_side]
    assert any("http.request" in line for line in logged)
    for line in logged:
        for secret in secrets:
            assert secret not in line, line


# --- operator surfaces ----------------------------------------------------------------------


async def test_metrics_are_for_the_operator_token_not_for_a_tenants_key(
    anonymous: httpx.AsyncClient, alice: httpx.AsyncClient
) -> None:
    """The review scraped every tenant's queue and task names from a public /metrics."""
    assert_unauthorized(await anonymous.get("/metrics"))
    refused = await alice.get("/metrics")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "operator_only"
    scraped = await anonymous.get("/metrics", headers=OPERATOR)
    assert scraped.status_code == 200
    assert "tidings_jobs_submitted_total" in scraped.text
    wrong = await anonymous.get("/metrics", headers={"authorization": "Bearer not-the-token"})
    assert_unauthorized(wrong)
    # Any byte may come in a header: a non-ASCII guess is a 401 like any other, not a 500.
    odd = await anonymous.get("/metrics", headers={"authorization": b"Bearer \xff\xfe"})
    assert_unauthorized(odd)


async def test_a_tenant_sees_workers_without_their_hosts_and_only_its_own_running_jobs(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    job = await alice.post(
        "/jobs", json={"task": "sleep_steps", "args": {"steps": 40, "delay_s": 0.05}}
    )
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]

    async def running() -> bool:
        return (await alice.get(f"/jobs/{job_id}")).json()["status"] == "running"

    async with asyncio.timeout(WITHIN_S):
        while not await running():  # noqa: ASYNC110 - the status lives behind the API
            await asyncio.sleep(0.01)
    full = (await anonymous.get("/workers", headers=OPERATOR)).json()["workers"]
    as_alice = (await alice.get("/workers")).json()["workers"]
    as_bob = (await bob.get("/workers")).json()["workers"]
    assert len(full) == len(as_alice) == len(as_bob) >= 1
    hosts = {worker["hostname"] for worker in full}
    assert None not in hosts
    for listed in (as_alice, as_bob):
        for worker in listed:
            assert worker["hostname"] is None and worker["pid"] is None
            assert not any(str(host) in worker["id"] for host in hosts)
    assert sum(worker["running"] for worker in full) >= 1
    assert sum(worker["running"] for worker in as_alice) >= 1
    assert sum(worker["running"] for worker in as_bob) == 0
    await alice.post(f"/jobs/{job_id}/cancel")


async def test_failed_credentials_from_one_address_are_rate_limited(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Unknown keys and bad stream tokens were answered as fast as they came (the review)."""
    limited = replace(settings, rate_limit_per_s=1, rate_limit_burst=3)
    key = await keys.create_key(pool, "erin", "good")
    async with (
        start_server(limited) as handle,
        httpx.AsyncClient(base_url=handle.url, timeout=WITHIN_S) as client,
    ):
        guesses = [{"authorization": f"Bearer tdk_guess_{n:064x}"} for n in range(3)]
        for guess in guesses:
            assert_unauthorized(await client.get("/jobs", headers=guess))
        refused = await client.get(f"/jobs/{MISSING_JOB}/events", params={"token": "forged"})
        assert_error(refused, 429, "rate_limited")
        wait_s = int(refused.headers["retry-after"])
        assert wait_s >= 1
        # Locked out: not even a right guess is checked until the wait is over ...
        assert_error(await client.get("/jobs", headers=bearer(key)), 429, "rate_limited")
        await asyncio.sleep(wait_s)
        # ... and after it, the right key works again.
        assert (await client.get("/jobs", headers=bearer(key))).status_code == 200


# --- a stream's authority ends with its credential ------------------------------------------


LONG_JOB = {"task": "sleep_steps", "args": {"steps": 400, "delay_s": 0.05}}


async def until_ended(events: AsyncIterator[tuple[int, str, dict[str, Any]]]) -> list[str]:
    """Read a stream to its end (it must end, and well before its job does); its kinds."""
    async with asyncio.timeout(WITHIN_S):
        return [kind async for _, kind, _ in events]


async def test_revoking_a_key_ends_its_streams_and_its_tokens_at_once(
    pool: asyncpg.Pool, settings: Settings, anonymous: httpx.AsyncClient, worker: WorkerHandle
) -> None:
    """The review: after `tidings keys revoke`, streams opened with the key, and with tokens
    it minted, kept delivering events; the tokens kept opening new ones."""
    key = await keys.create_key(pool, "frank", "revoked-while-streaming")
    owner = {"authorization": f"Bearer {key.secret}"}
    job = (await anonymous.post("/jobs", json=LONG_JOB, headers=owner)).json()
    token_url = job["links"]["events"]
    async with (
        aconnect_sse(anonymous, "GET", f"/jobs/{job['id']}/events", headers=owner) as keyed,
        aconnect_sse(anonymous, "GET", token_url) as tokened,
    ):
        assert keyed.response.status_code == tokened.response.status_code == 200
        streams = [job_events(keyed), job_events(tokened)]
        first = [await anext(events) for events in streams]
        assert [kind for _, kind, _ in first] == ["queued", "queued"]
        assert await keys.revoke_key(pool, key.id)
        # What `tidings keys revoke` publishes after the revocation commits.
        redis = await queue.connect(settings.redis_url)
        await redis.publish(queue.Names(settings.namespace).revoked_channel, str(key.id))
        await redis.aclose()
        for events in streams:
            assert "succeeded" not in await until_ended(events)
    assert_unauthorized(await anonymous.get(token_url))
    assert_unauthorized(await anonymous.get(f"/jobs/{job['id']}", headers=owner))
    await cancel_as(pool, anonymous, "frank", job["id"])


async def test_without_the_notice_the_recheck_ends_a_revoked_keys_streams(
    pool: asyncpg.Pool, anonymous: httpx.AsyncClient, worker: WorkerHandle
) -> None:
    key = await keys.create_key(pool, "frank", "notice-lost")
    owner = {"authorization": f"Bearer {key.secret}"}
    job = (await anonymous.post("/jobs", json=LONG_JOB, headers=owner)).json()
    async with aconnect_sse(anonymous, "GET", f"/jobs/{job['id']}/events", headers=owner) as keyed:
        events = job_events(keyed)
        assert (await anext(events))[1] == "queued"
        assert await keys.revoke_key(pool, key.id)  # and no notice on the channel
        assert "succeeded" not in await until_ended(events)
    await cancel_as(pool, anonymous, "frank", job["id"])


async def cancel_as(
    pool: asyncpg.Pool, client: httpx.AsyncClient, tenant: str, job_id: str
) -> None:
    """Cancel a long job with a live key of its tenant (its own key was revoked)."""
    other = await keys.create_key(pool, tenant, "cleanup")
    response = await client.post(f"/jobs/{job_id}/cancel", headers=bearer(other))
    assert response.status_code in (200, 202), response.text


async def test_a_token_stream_ends_when_the_token_expires(
    settings: Settings, pool: asyncpg.Pool, worker: WorkerHandle
) -> None:
    """The review: a stream opened just before its token expired delivered events 15 s later."""
    short = replace(settings, stream_token_ttl_s=1.0)
    key = await keys.create_key(pool, "grace", "short tokens")
    async with (
        start_server(short) as handle,
        httpx.AsyncClient(base_url=handle.url, timeout=WITHIN_S) as client,
    ):
        owner = {"authorization": f"Bearer {key.secret}"}
        job = (await client.post("/jobs", json=LONG_JOB, headers=owner)).json()
        token_url = job["links"]["events"]
        async with aconnect_sse(client, "GET", token_url) as tokened:
            events = job_events(tokened)
            assert (await anext(events))[1] == "queued"
            assert "succeeded" not in await until_ended(events)
        assert_unauthorized(await client.get(token_url))
        # A fresh token (from the job, with the key) opens the stream again.
        fresh = (await client.get(f"/jobs/{job['id']}", headers=owner)).json()["links"]["events"]
        async with aconnect_sse(client, "GET", fresh) as again:
            assert again.response.status_code == 200
        await client.post(f"/jobs/{job['id']}/cancel", headers=owner)
