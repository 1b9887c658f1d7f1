"""The example FastAPI application (examples/fastapi_app/), served as its command serves
it: the app with tidings mounted at `/tidings`, and a worker that runs its tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace

import asyncpg
import httpx
import pytest
from httpx_sse import aconnect_sse
from playwright.async_api import Browser, expect

from examples.fastapi_app.__main__ import TASKS
from examples.fastapi_app.app import build_app
from tests.support.servers import free_port, serve, spawn, start_worker
from tests.support.sse import job_events
from tidings.core.settings import Settings


@dataclass
class Example:
    url: str
    settings: Settings


@pytest.fixture(scope="module")
def example_settings(settings: Settings) -> Iterator[Settings]:
    """The test database and Redis, the example's tasks, and its database URL in the
    environment, where the worker's startup hook reads it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIDINGS_DATABASE_URL", settings.database_url)
        yield replace(settings, auth="off", tasks=(*settings.tasks, TASKS))


@pytest.fixture(scope="module")
async def example(
    example_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Example]:
    app = build_app(example_settings, tmp_path_factory.mktemp("uploads"))
    async with start_worker(example_settings), serve(app) as url:
        yield Example(url, example_settings)


@pytest.fixture
async def client(example: Example) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=example.url, timeout=30) as client:
        yield client


async def follow(client: httpx.AsyncClient, events_url: str) -> list[tuple[str, dict]]:
    """Every event of a job's stream (the prefixed URL the app returned), to its end."""
    assert events_url.startswith("/tidings/jobs/")
    async with aconnect_sse(client, "GET", events_url) as source:
        return [(kind, data) async for _, kind, data in job_events(source)]


async def test_a_registered_user_gets_a_welcome_email_job_from_the_same_transaction(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    response = await client.post("/users", json={"email": "ada@example.com"})
    assert response.status_code == 201, response.text
    body = response.json()
    job = body["job"]
    assert job["task"] == "send_welcome_email" and job["args"] == {"user_id": body["user_id"]}
    events = await follow(client, job["links"]["events"])
    assert [kind for kind, _ in events] == ["queued", "started", "succeeded"]
    result = await pool.fetchval("SELECT result FROM jobs WHERE id = $1", job["id"])
    assert result == {"sent_to": "ada@example.com"}
    sent = await pool.fetchval(
        "SELECT count(*) FROM welcome_emails WHERE user_id = $1", body["user_id"]
    )
    assert sent == 1
    again = await client.post("/users", json={"email": "ada@example.com"})
    assert again.status_code == 409


async def test_a_rolled_back_registration_leaves_no_user_and_no_job(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    response = await client.post(
        "/users", json={"email": "grace@example.com", "fail_after_enqueue": True}
    )
    assert response.status_code == 409, response.text
    # A registration after it runs to its end: the rolled-back one had its chance to run.
    after = (await client.post("/users", json={"email": "alan@example.com"})).json()
    await follow(client, after["job"]["links"]["events"])
    assert (
        await pool.fetchval("SELECT count(*) FROM users WHERE email = $1", "grace@example.com") == 0
    )
    orphans = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE task = 'send_welcome_email'"
        " AND (args->>'user_id')::int NOT IN (SELECT id FROM users)"
    )
    assert orphans == 0


async def test_bad_input_to_the_app_is_a_4xx(client: httpx.AsyncClient) -> None:
    assert (await client.post("/users", json={"email": "not an address"})).status_code == 422
    assert (await client.post("/uploads")).status_code == 422
    missing = await client.get("/uploads/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404


async def test_an_upload_runs_with_a_progress_page_that_follows_it(
    client: httpx.AsyncClient,
) -> None:
    text = " ".join(f"word{n % 7}" for n in range(1000))
    response = await client.post("/uploads", files={"file": ("notes.txt", text.encode())})
    assert response.status_code == 202, response.text
    body = response.json()
    page = await client.get(body["page"])
    assert page.status_code == 200
    events_url = body["job"]["links"]["events"]
    assert f'new EventSource("{events_url}")' in page.text
    events = await follow(client, events_url)
    progress = [data for kind, data in events if kind == "progress"]
    assert [(p["current"], p["total"]) for p in progress] == [(n, 5) for n in range(1, 6)]
    assert events[-1][0] == "succeeded"
    job = (await client.get(f"/tidings/jobs/{body['job']['id']}")).json()
    assert job["result"]["words"] == 1000


async def test_the_dashboard_is_mounted_under_the_prefix(client: httpx.AsyncClient) -> None:
    page = await client.get("/tidings/")
    assert page.status_code == 200 and 'data-root="/tidings"' in page.text
    assert (await client.get("/tidings/healthz")).status_code == 200


async def test_the_example_runs_with_its_one_command(settings: Settings) -> None:
    """`python -m examples.fastapi_app`: the app and a worker in one process, stopped by
    SIGTERM with exit status 0."""
    port = free_port()
    running = replace(settings, port=port, auth="off", log_level="info")
    process = await spawn("examples.fastapi_app", running)
    try:
        await process.wait_for_line("Uvicorn running on")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            response = await client.post("/users", json={"email": "linus@example.com"})
            assert response.status_code == 201, response.text
            events = await follow(client, response.json()["job"]["links"]["events"])
        assert events[-1][0] == "succeeded"
    finally:
        assert await process.stop() == 0, process.output


@pytest.mark.e2e
@pytest.mark.browser
async def test_in_chromium_the_progress_page_and_the_mounted_dashboard_are_live(
    example: Example, client: httpx.AsyncClient, browser: Browser
) -> None:
    """The app's own progress page follows an upload's job to the end; the dashboard under
    `/tidings` shows another job's progress moving, and cancels it."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        text = " ".join(f"w{n % 11}" for n in range(4000))  # 20 steps
        upload = await client.post("/uploads", files={"file": ("a.txt", text.encode())})
        await page.goto(example.url + upload.json()["page"])
        bar = page.locator("#bar")
        await expect(bar).to_have_attribute("max", "20")
        await page.wait_for_function("document.getElementById('bar').value > 0")
        await expect(page.locator("#status")).to_have_text("succeeded")
        assert await bar.evaluate("(bar) => bar.value") == 20

        long = await client.post(
            "/tidings/jobs",
            json={"task": "sleep_steps", "args": {"steps": 600, "delay_s": 0.05}},
        )
        job_id = long.json()["id"]
        await page.goto(f"{example.url}/tidings/ui/jobs/{job_id}")
        progress = page.locator("#job-progress")
        await page.wait_for_function(
            "(value) => document.getElementById('job-progress').value > value", arg=0
        )
        seen = await progress.evaluate("(bar) => bar.value")
        await page.wait_for_function(
            "(value) => document.getElementById('job-progress').value > value", arg=seen
        )
        await page.locator("#cancel-job").click()
        await expect(page.locator("#job-status")).to_have_text("cancelled")
    finally:
        await context.close()
    assert errors == []
