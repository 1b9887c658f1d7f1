"""Every bad input gets its precise status and a JSON error body, never a 500.

The body is always `{"error": {"code", "message", "details"?}}`, and a rejected
submission leaves nothing behind: no job row, no event row, no change to `GET /jobs`.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.servers import ServerHandle, WorkerHandle
from tidings.core.settings import Settings
from tidings.worker import Job, task

MISSING_JOB = "00000000-0000-4000-8000-000000000000"
# No worker consumes this queue, so jobs made here stay queued and add no events later.
PARKED = "parked"
MALFORMED_JOB_IDS = ["nope", "1234", f"{MISSING_JOB}0", MISSING_JOB.replace("-", "_")]


@task
async def needs_doc_ids(job: Job, doc_ids: list[str], label: str = "") -> None:
    """Takes a required argument, so a submission can leave it out."""


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The module's settings; the worker also registers `needs_doc_ids` from this module."""
    return replace(settings, tasks=(*settings.tasks, __name__))


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
async def job_id(client: httpx.AsyncClient) -> str:
    """An existing job, for the cases where only the query is wrong."""
    response = await client.post("/jobs", json={"task": "noop", "queue": PARKED})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """`response` is exactly the JSON error `status`/`code` (naming `field`); returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if field is not None:
        assert error["details"]["field"] == field
    return error


async def stored(client: httpx.AsyncClient, pool: asyncpg.Pool) -> tuple[int, int, int]:
    """Jobs seen by `GET /jobs`, and job and event rows in Postgres."""
    response = await client.get("/jobs", params={"limit": 500})
    assert response.status_code == 200
    listed = len(response.json()["jobs"])
    assert listed < 500, "the module made too many jobs to count them on one page"
    jobs = await pool.fetchval("SELECT count(*) FROM jobs")
    events = await pool.fetchval("SELECT count(*) FROM job_history")
    return listed, jobs, events


@asynccontextmanager
async def persists_nothing(client: httpx.AsyncClient, pool: asyncpg.Pool) -> AsyncIterator[None]:
    before = await stored(client, pool)
    yield
    assert await stored(client, pool) == before


async def post_rejected(
    client: httpx.AsyncClient, pool: asyncpg.Pool, **request: Any
) -> httpx.Response:
    """POST /jobs, checking that the rejected submission stored nothing."""
    async with persists_nothing(client, pool):
        return await client.post("/jobs", **request)


# --- the control: a good submission is stored, so the checks below can see a change --------


async def test_a_good_submission_is_stored_and_counted(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    listed, jobs, events = await stored(client, pool)
    submission = {"task": "needs_doc_ids", "args": {"doc_ids": []}, "queue": PARKED}
    response = await client.post("/jobs", json=submission)
    assert response.status_code == 202, response.text
    assert await stored(client, pool) == (listed + 1, jobs + 1, events + 1)


# --- the body ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"{bad", b'{"task": "noop",}', b'{"task": "noop"', b"\xff\xfe{}", b"NaN", b"{} {}"],
    ids=["garbage", "trailing-comma", "truncated", "not-utf8", "nan", "two-values"],
)
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, pool: asyncpg.Pool, content: bytes
) -> None:
    response = await post_rejected(
        client, pool, content=content, headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, "malformed_request")
    assert error["message"] == "request body is not valid JSON"


@pytest.mark.parametrize(
    "content", [b"[]", b'[{"task": "noop"}]', b'"noop"', b"42", b"null", b"true"]
)
async def test_json_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, pool: asyncpg.Pool, content: bytes
) -> None:
    response = await post_rejected(client, pool, content=content)
    error = assert_error(response, 400, "malformed_request")
    assert error["message"] == "request body must be a JSON object"


@pytest.mark.parametrize("content", [b"", b"  \r\n\t "], ids=["empty", "whitespace"])
async def test_an_empty_body_is_400(
    client: httpx.AsyncClient, pool: asyncpg.Pool, content: bytes
) -> None:
    response = await post_rejected(client, pool, content=content)
    error = assert_error(response, 400, "malformed_request")
    assert "empty" in error["message"]


def padded_submission(size: int) -> bytes:
    """A syntactically valid submission exactly `size` bytes long."""
    head, tail = b'{"task": "noop", "args": {"pad": "', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_a_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    body = padded_submission(settings.max_body_bytes + 1)
    response = await post_rejected(client, pool, content=body)
    assert response.request.headers["content-length"] == str(len(body))
    error = assert_error(response, 413, "body_too_large")
    assert str(settings.max_body_bytes) in error["message"]


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    body = padded_submission(settings.max_body_bytes + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await post_rejected(client, pool, content=chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "body_too_large")


async def test_a_body_exactly_at_the_limit_is_read(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    # Read in full and parsed: what rejects it is the task's schema (no `pad` arg), not size.
    response = await post_rejected(client, pool, content=padded_submission(settings.max_body_bytes))
    error = assert_error(response, 422, "invalid_args", field="args")
    assert "pad" in error["details"]["reason"]


# --- the task and its args ------------------------------------------------------------------


async def test_an_unknown_task_is_422_naming_the_task_field(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    response = await post_rejected(client, pool, json={"task": "no_such_task", "args": {}})
    error = assert_error(response, 422, "unknown_task", field="body.task")
    assert "no_such_task" in error["message"]


@pytest.mark.parametrize(
    ("submission", "field", "named"),
    [
        ({"task": "sleep_steps", "args": {"steps": "ten"}}, "args.steps", "args.steps"),
        ({"task": "sleep_steps", "args": {"steps": 1.5}}, "args.steps", "args.steps"),
        ({"task": "sleep_steps", "args": {"delay_s": None}}, "args.delay_s", "args.delay_s"),
        ({"task": "needs_doc_ids", "args": {"doc_ids": "a"}}, "args.doc_ids", "args.doc_ids"),
        ({"task": "needs_doc_ids", "args": {"doc_ids": ["a", 2]}}, "args.doc_ids[1]", "[1]"),
        ({"task": "needs_doc_ids", "args": {}}, "args.doc_ids", "doc_ids"),
        ({"task": "needs_doc_ids"}, "args.doc_ids", "doc_ids"),
        ({"task": "sleep_steps", "args": {"steps": 1, "stesp": 2}}, "args", "stesp"),
        ({"task": "noop", "args": {"extra": True}}, "args", "extra"),
    ],
    ids=[
        "wrong-type",
        "float-for-int",
        "null",
        "string-for-list",
        "wrong-item",
        "missing-required",
        "args-omitted",
        "extra-property",
        "args-for-no-args",
    ],
)
async def test_args_that_fail_the_schema_are_422_naming_the_field(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    submission: dict[str, Any],
    field: str,
    named: str,
) -> None:
    response = await post_rejected(client, pool, json=submission)
    error = assert_error(response, 422, "invalid_args", field=field)
    assert repr(submission["task"]) in error["message"]
    assert named in error["details"]["reason"]


# --- the envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submission", "field", "named"),
    [
        ({"task": "noop", "priority": 11}, "body.priority", "10"),
        ({"task": "noop", "priority": -11}, "body.priority", "-10"),
        ({"task": "noop", "priority": 1.5}, "body.priority", "integer"),
        ({"task": "noop", "priority": "high"}, "body.priority", "integer"),
        ({"task": "noop", "prio": 1}, "body", "prio"),
        ({"args": {}}, "body.task", "task"),
        ({"task": "noop", "args": [1]}, "body.args", "object"),
        ({"task": "noop", "run_at": 1_900_000_000}, "body.run_at", "string"),
        ({"task": "noop", "delay_s": -1}, "body.delay_s", "0"),
    ],
    ids=[
        "priority-above",
        "priority-below",
        "priority-float",
        "priority-string",
        "unknown-field",
        "task-missing",
        "args-not-object",
        "run-at-number",
        "negative-delay",
    ],
)
async def test_a_bad_envelope_field_is_422(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    submission: dict[str, Any],
    field: str,
    named: str,
) -> None:
    response = await post_rejected(client, pool, json=submission)
    error = assert_error(response, 422, "invalid_request", field=field)
    assert named in error["details"]["reason"]


@pytest.mark.parametrize(
    "run_at",
    [
        "garbage",
        "2030-13-01T00:00:00+00:00",
        "2030-01-01T00:00:00",  # no offset: ambiguous
        "2030-01-01",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
    ids=["garbage", "month-13", "no-offset", "date-only", "before-utc-range", "after-utc-range"],
)
async def test_an_unreadable_run_at_is_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool, run_at: str
) -> None:
    response = await post_rejected(client, pool, json={"task": "noop", "run_at": run_at})
    error = assert_error(response, 422, "invalid_request", field="body.run_at")
    assert "offset" in error["message"]


async def test_run_at_and_delay_s_together_are_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    submission = {"task": "noop", "run_at": "2030-01-01T00:00:00+00:00", "delay_s": 1}
    response = await post_rejected(client, pool, json=submission)
    error = assert_error(response, 422, "invalid_request", field="body.run_at")
    assert "delay_s" in error["details"]["reason"]


@pytest.mark.parametrize(
    ("submission", "field"),
    [
        ({"task": "no\u0000op"}, "body.task"),
        ({"task": "needs_doc_ids", "args": {"doc_ids": ["a", "b\u0000"]}}, "body.args.doc_ids[1]"),
        ({"task": "noop", "args": {"\u0000": 1}}, "body.args"),
        ({"task": "noop", "queue": "q\u0000"}, "body.queue"),
        ({"task": "noop", "idempotency_key": "\u0000"}, "body.idempotency_key"),
    ],
    ids=["task", "args-value", "args-key", "queue", "idempotency-key"],
)
async def test_a_nul_character_is_422_not_a_database_error(
    client: httpx.AsyncClient, pool: asyncpg.Pool, submission: dict[str, Any], field: str
) -> None:
    # Postgres text and jsonb cannot hold U+0000; the server must say so, not crash on it.
    response = await post_rejected(client, pool, json=submission)
    assert_error(response, 422, "invalid_request", field=field)


# --- job ids --------------------------------------------------------------------------------


EVENTS_ACCEPT = {"sse": "text/event-stream", "json": "application/json"}


@pytest.mark.parametrize("path", ["/jobs/{id}", "/jobs/{id}/events"])
@pytest.mark.parametrize("accept", list(EVENTS_ACCEPT.values()), ids=list(EVENTS_ACCEPT))
async def test_an_unknown_job_id_is_404(client: httpx.AsyncClient, path: str, accept: str) -> None:
    response = await client.get(path.format(id=MISSING_JOB), headers={"accept": accept})
    error = assert_error(response, 404, "not_found")
    assert MISSING_JOB in error["message"]


@pytest.mark.parametrize("path", ["/jobs/{id}", "/jobs/{id}/events"])
@pytest.mark.parametrize("accept", list(EVENTS_ACCEPT.values()), ids=list(EVENTS_ACCEPT))
@pytest.mark.parametrize("raw_id", MALFORMED_JOB_IDS)
async def test_a_malformed_job_id_is_404(
    client: httpx.AsyncClient, path: str, accept: str, raw_id: str
) -> None:
    response = await client.get(path.format(id=raw_id), headers={"accept": accept})
    assert_error(response, 404, "not_found")


# --- list queries ---------------------------------------------------------------------------


def forged_cursor(created: str) -> str:
    return base64.urlsafe_b64encode(f"{created}|{MISSING_JOB}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "2.0"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "²"}, "limit"),  # str.isdigit() says yes, int() says no
        ({"status": "bogus"}, "status"),
        ({"status": "SUCCEEDED"}, "status"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": forged_cursor("yesterday")}, "cursor"),
        ({"cursor": forged_cursor("0001-01-01T00:00:00+01:00")}, "cursor"),
        ({"task": "no\u0000op"}, "task"),
        ({"queue": "\u0000"}, "queue"),
    ],
    ids=[
        "limit-0",
        "limit-501",
        "limit-x",
        "limit-negative",
        "limit-float",
        "limit-empty",
        "limit-superscript",
        "status-bogus",
        "status-uppercase",
        "cursor-garbage",
        "cursor-not-base64",
        "cursor-bad-time",
        "cursor-out-of-range",
        "task-nul",
        "queue-nul",
    ],
)
async def test_a_bad_list_query_is_422(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/jobs", params=params)
    assert_error(response, 422, "invalid_query", field=field)


async def test_the_limit_bounds_themselves_are_accepted(client: httpx.AsyncClient) -> None:
    for limit in ("1", "500"):
        response = await client.get("/jobs", params={"limit": limit})
        assert response.status_code == 200, response.text


# --- resuming a stream ----------------------------------------------------------------------


# Ten digits is past any seq; '²' passes str.isdigit() but not int().
BAD_SEQS = ["abc", "-1", "1.5", "1e3", "0x1", "1234567890", "²"]


@pytest.mark.parametrize("accept", list(EVENTS_ACCEPT.values()), ids=list(EVENTS_ACCEPT))
@pytest.mark.parametrize("raw", BAD_SEQS)
async def test_a_bad_last_event_id_is_422(
    client: httpx.AsyncClient, job_id: str, accept: str, raw: str
) -> None:
    # Header values travel as latin-1 bytes; '²' is the byte 0xB2.
    headers = {"accept": accept, "last-event-id": raw.encode("latin-1")}
    response = await client.get(f"/jobs/{job_id}/events", headers=headers)  # type: ignore[arg-type]
    assert_error(response, 422, "invalid_query", field="Last-Event-ID")


@pytest.mark.parametrize("accept", list(EVENTS_ACCEPT.values()), ids=list(EVENTS_ACCEPT))
@pytest.mark.parametrize("raw", [*BAD_SEQS, "", " 1"])
async def test_a_bad_after_is_422(
    client: httpx.AsyncClient, job_id: str, accept: str, raw: str
) -> None:
    response = await client.get(
        f"/jobs/{job_id}/events", params={"after": raw}, headers={"accept": accept}
    )
    assert_error(response, 422, "invalid_query", field="after")


# --- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/jobs/a/b/c", f"/jobs/{MISSING_JOB}/nope", f"/jobs/{MISSING_JOB}/events/1"]
)
async def test_an_unknown_route_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404, "not_found")


def allowed(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("method", "path", "allows"),
    [
        ("PUT", "/jobs", "POST"),
        ("DELETE", "/jobs", "POST"),
        ("POST", f"/jobs/{MISSING_JOB}", "GET"),
        ("DELETE", f"/jobs/{MISSING_JOB}", "GET"),
        ("POST", f"/jobs/{MISSING_JOB}/events", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_a_wrong_method_is_405_json(
    client: httpx.AsyncClient, pool: asyncpg.Pool, method: str, path: str, allows: str
) -> None:
    async with persists_nothing(client, pool):
        response = await client.request(method, path, json={"task": "noop"})
    assert_error(response, 405, "method_not_allowed")
    assert allows in allowed(response)
