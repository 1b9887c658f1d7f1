"""Finding and acting on many jobs in a real browser (Debian's Chromium, driven by
Playwright): name filters and paging with position, bulk retry behind a confirmation,
and the trends panel following finished jobs live."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.servers import ServerHandle, WorkerHandle

DESKTOP = {"width": 1280, "height": 900}
DASH = "\u2013"  # the en dash of the position, and of a value not known yet

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page; an uncaught script error fails the test."""
    context = await browser.new_context(viewport=DESKTOP)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(f"uncaught: {error.error}"))
    context.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    yield await context.new_page()
    await context.close()
    assert errors == []


async def insert_jobs(
    pool: asyncpg.Pool, task: str, count: int, *, status: str = "succeeded", queue: str = "ui"
) -> list[str]:
    """`count` jobs of `task`, one second apart, the newest a day ago, oldest first."""
    start = datetime.now(UTC) - timedelta(days=1, seconds=count)
    ids = [uuid.uuid4() for _ in range(count)]
    await pool.executemany(
        """INSERT INTO jobs (id, task, queue, status, created_at, seq, finished_at, error)
           VALUES ($1, $2, $3, $4, $5, 1, $5, $6)""",
        [
            (
                job_id,
                task,
                queue,
                status,
                start + timedelta(seconds=n),
                {"type": "Boom", "message": "boom", "traceback": None}
                if status == "failed"
                else None,
            )
            for n, job_id in enumerate(ids)
        ],
    )
    await pool.executemany(
        "INSERT INTO job_events (job_id, seq, kind, status, attempt)"
        " VALUES ($1, 1, 'queued', 'queued', 1)",
        [(job_id,) for job_id in ids],
    )
    return [str(job_id) for job_id in ids]


async def row_ids(page: Page) -> list[str]:
    rows = page.locator("#jobs-body tr")
    ids: list[str] = await rows.evaluate_all("(rows) => rows.map((tr) => tr.dataset.jobId)")
    return ids


async def test_a_name_prefix_finds_the_jobs_and_the_oldest_page_is_one_click_away(
    page: Page, server: ServerHandle, pool: asyncpg.Pool
) -> None:
    exports = await insert_jobs(pool, "export_report", 120)
    await insert_jobs(pool, "send_email", 5)
    await page.goto(server.url + "/")
    await page.locator("#filter-task").fill("export")  # "starts with" is the default
    await page.locator("#filter-task").press("Enter")
    await expect(page).to_have_url(f"{server.url}/?task_prefix=export")
    await expect(page.locator("#jobs-caption")).to_contain_text("task starts with export")
    await expect(page.locator("#page-position")).to_have_text(f"1{DASH}50 of 120")
    assert await row_ids(page) == exports[::-1][:50]

    await page.locator("#page-last").click()
    await expect(page.locator("#page-position")).to_have_text(f"71{DASH}120 of 120")
    assert await row_ids(page) == exports[::-1][70:]
    await expect(page.locator("#page-next")).to_be_hidden()
    await expect(page.locator("#page-last")).to_be_hidden()

    await page.locator("#page-prev").click()
    await expect(page.locator("#page-position")).to_have_text(f"21{DASH}70 of 120")
    assert await row_ids(page) == exports[::-1][20:70]
    await page.locator("#page-first").click()
    await expect(page.locator("#page-position")).to_have_text(f"1{DASH}50 of 120")
    assert parse_qs(urlsplit(page.url).query) == {"task_prefix": ["export"]}

    # A substring, and a created-at range that leaves the newest 20 out.
    await page.locator("#filter-task-match").select_option("contains")
    await page.locator("#filter-task").fill("port_rep")
    # The form takes whole seconds: this leaves out exports[100] and every later one.
    before = await pool.fetchval(
        "SELECT created_at FROM jobs WHERE id = $1", uuid.UUID(exports[100])
    )
    local = await page.evaluate(
        "(iso) => { const d = new Date(iso); d.setMinutes(d.getMinutes() - d.getTimezoneOffset());"
        " return d.toISOString().slice(0, 19); }",
        before.isoformat(),
    )
    await page.locator("#filter-created-before").fill(local)
    await page.locator("#filters button").click()
    query = parse_qs(urlsplit(page.url).query)
    assert query["task_contains"] == ["port_rep"]
    assert "created_before" in query
    await expect(page.locator("#page-position")).to_have_text(f"1{DASH}50 of 100")
    assert await row_ids(page) == exports[::-1][20:70]
    await expect(page.locator("#filter-task-match")).to_have_value("contains")


async def test_bulk_retry_asks_first_and_retries_the_selected_then_all_that_match(
    page: Page, server: ServerHandle, pool: asyncpg.Pool
) -> None:
    failed = await insert_jobs(pool, "bulk_flaky", 5, status="failed", queue="bulk_parked")
    await page.goto(f"{server.url}/?status=failed&task=bulk_flaky")
    await expect(page.locator("#jobs-body tr")).to_have_count(5)
    newest, second = failed[-1], failed[-2]
    for job_id in (newest, second):
        await page.locator(f'#jobs-body tr[data-job-id="{job_id}"] .select-job').check()
    await expect(page.locator("#selected-count")).to_have_text("2 selected")

    await page.locator("#bulk-retry").click()
    dialog = page.locator("#bulk-confirm")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#bulk-confirm-title")).to_have_text("Retry 2 jobs?")
    await page.locator("#bulk-confirm-keep").click()  # thought better of it
    await expect(dialog).to_be_hidden()
    statuses = await pool.fetch("SELECT DISTINCT status FROM jobs WHERE task = 'bulk_flaky'")
    assert [row["status"] for row in statuses] == ["failed"]

    await page.locator("#bulk-retry").click()
    await page.locator("#bulk-confirm-go").click()
    await expect(page.locator("#bulk-outcome")).to_have_text("2 retried.")
    # Queued now, so no longer on this list of failed jobs: the list was read again.
    await expect(page.locator("#jobs-body tr")).to_have_count(3)
    await expect(page.locator("#selected-count")).to_have_text("None selected")
    rows = await pool.fetch(
        "SELECT id::text, status, attempt FROM jobs"
        " WHERE task = 'bulk_flaky' AND status <> 'failed'"
    )
    assert {(row["id"], row["status"], row["attempt"]) for row in rows} == {
        (newest, "queued", 2),
        (second, "queued", 2),
    }

    await page.locator("#bulk-retry-failed").click()
    await expect(page.locator("#bulk-confirm-title")).to_have_text("Retry 3 failed jobs?")
    await expect(page.locator("#bulk-confirm-text")).to_contain_text("task bulk_flaky")
    await page.locator("#bulk-confirm-go").click()
    await expect(page.locator("#bulk-outcome")).to_have_text("3 retried.")
    await expect(page.locator("#jobs-empty")).to_be_visible()
    left = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE task = 'bulk_flaky' AND status = 'failed'"
    )
    assert left == 0


async def test_the_trends_panel_follows_finished_jobs_live_without_polling(
    page: Page, server: ServerHandle, worker: WorkerHandle
) -> None:
    trends_reads: list[str] = []
    page.on(
        "request",
        lambda request: (
            trends_reads.append(request.url)
            if urlsplit(request.url).path == "/stats/trends"
            else None
        ),
    )
    await page.goto(server.url + "/")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator("#trends")).to_have_attribute("data-reads", "1")
    before = int(await page.locator("#trends-summary").get_attribute("data-jobs") or 0)
    await page.wait_for_timeout(3000)  # a poll, if there were one, would show in this time
    assert len(trends_reads) == 1, trends_reads

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        listed = await client.get("/jobs", params={"limit": 1, "position": "true"})
        total = listed.json()["position"]["total"]
        for _ in range(3):
            response = await client.post("/jobs", json={"task": "noop"})
            assert response.status_code == 202, response.text
    await expect(page.locator("#trends-summary")).to_have_attribute(
        "data-jobs", str(before + 3), timeout=20_000
    )
    await expect(page.locator("#trends-chart rect.bar-succeeded").first).to_be_attached()
    # The jobs joined the list live, and its position counts them.
    await expect(page.locator("#page-position")).to_have_text(re.compile(rf" of {total + 3}$"))
    await expect(page.locator("#trend-run-p50")).not_to_have_text(DASH)
    await page.locator(".trends-more summary").click()
    await expect(page.locator('#trends-names-body tr[data-task="noop"]')).to_be_visible()
