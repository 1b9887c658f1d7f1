"""The stream paths are served outside Starlette's stack, and answer as the rest of the API:
the same JSON errors and headers, a request id, security headers, metrics and log lines.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.integration.test_observability import samples
from tests.support.api import submit, until
from tests.support.servers import ServerHandle, WorkerHandle
from tests.support.sse import job_events
from tidings.server.middleware import SECURITY_HEADERS

WITHIN_S = 10.0
PARKED = "parked"
MISSING_JOB = str(uuid.UUID(int=7))


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


def assert_api_headers(response: httpx.Response, request_id: str) -> None:
    assert response.headers["x-request-id"] == request_id
    for name, value in SECURITY_HEADERS:
        assert response.headers[name.decode()] == value.decode()


async def test_a_stream_error_is_the_apis_error(client: httpx.AsyncClient) -> None:
    # The same refusal from a Starlette route and from the stream path.
    job = await client.get(f"/jobs/{MISSING_JOB}", headers={"x-request-id": "job"})
    stream = await client.get(f"/jobs/{MISSING_JOB}/events", headers={"x-request-id": "stream"})
    assert (job.status_code, stream.status_code) == (404, 404)
    assert stream.json()["error"]["code"] == job.json()["error"]["code"] == "not_found"
    assert stream.headers["content-type"] == job.headers["content-type"]
    assert_api_headers(stream, "stream")


async def test_a_bad_last_event_id_is_a_422_with_the_field(client: httpx.AsyncClient) -> None:
    job_id = (await submit(client, "noop", queue=PARKED))["id"]
    response = await client.get(
        f"/jobs/{job_id}/events", headers={"last-event-id": "x", "x-request-id": "bad-id"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_query"
    assert response.json()["error"]["details"]["field"] == "Last-Event-ID"
    assert_api_headers(response, "bad-id")


@pytest.mark.parametrize("path", [f"/jobs/{MISSING_JOB}/events", "/events"])
async def test_another_method_on_a_stream_path_is_a_405(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(path, headers={"x-request-id": "post"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert_api_headers(response, "post")


async def test_a_stream_carries_the_api_headers_and_is_counted_once_it_ends(
    client: httpx.AsyncClient,
) -> None:
    def served(text: str) -> float:
        labels = (("method", "GET"), ("route", "/jobs/{job_id}/events"), ("status", "200"))
        return samples(text).get(("tidings_http_requests_total", labels), 0)

    before = served((await client.get("/metrics")).text)
    job_id = (await submit(client, "noop", queue=PARKED))["id"]
    headers = {"x-request-id": "streamed"}
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as source:
        assert_api_headers(source.response, "streamed")
        assert (await anext(job_events(source)))[1] == "queued"

    async def counted() -> bool:
        return served((await client.get("/metrics")).text) == before + 1

    await until(counted, WITHIN_S)
