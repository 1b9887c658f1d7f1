"""The batch pages in a real browser (Debian's Chromium, driven by Playwright) against server
and worker processes: a batch's big bar going live to finished, its member table filtered
by status, the list of batches, and a job page linking its batch, parent, dependencies and
children."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.e2e.test_dashboard import DESKTOP, LANDMARK, ServerProcess, Tab
from tests.support.servers import Process, free_port, spawn
from tidings.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def process_settings(settings: Settings) -> Settings:
    return replace(settings, port=free_port(), concurrency=4, log_level="info")


@pytest.fixture(scope="module")
async def server(process_settings: Settings) -> AsyncIterator[ServerProcess]:
    served = ServerProcess(process_settings)
    await served.start()
    yield served
    if served.process is not None:
        await served.stop()


@pytest.fixture(scope="module")
async def worker(process_settings: Settings, server: ServerProcess) -> AsyncIterator[Process]:
    process = await spawn("tidings.worker", process_settings)
    await process.wait_for_line("worker.ready")
    yield process
    assert await process.stop() == 0, process.output


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    """A fresh browser context; what any of its pages breaks fails the test."""
    context = await browser.new_context(viewport=DESKTOP)
    opened = Tab(await context.new_page(), [], [])
    context.on("weberror", lambda error: opened.errors.append(f"uncaught: {error.error}"))
    context.on(
        "console",
        lambda message: (
            opened.errors.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    context.on("request", lambda request: opened.requests.append(request.url))
    yield opened
    await context.close()
    assert opened.errors == []


async def submit_batch(url: str, jobs: list[dict[str, Any]], name: str | None = None) -> Any:
    body: dict[str, Any] = {"jobs": jobs}
    if name:
        body["name"] = name
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/batches", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def sleeping(steps: int, delay_s: float, ref: str | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {"task": "sleep_steps", "args": {"steps": steps, "delay_s": delay_s}}
    return {**job, "ref": ref} if ref else job


async def unique_landmarks(tab: Tab) -> None:
    """axe's landmark-unique rule, read from the accessibility tree Chromium builds."""
    tree = await tab.page.locator("body").aria_snapshot()
    landmarks = [match.groups() for line in tree.splitlines() if (match := LANDMARK.match(line))]
    assert len(landmarks) == len(set(landmarks)), landmarks


async def test_the_batch_page_goes_live_to_finished_with_no_reload_or_polling(
    tab: Tab, server: ServerProcess, worker: Process
) -> None:
    batch = await submit_batch(
        server.url,
        [
            sleeping(12, 0.1, "a"),
            sleeping(12, 0.1, "b"),
            {"task": "noop", "depends_on": ["a", "b"]},
        ],
        name="nightly",
    )
    page = tab.page
    await page.goto(f"{server.url}/ui/batches/{batch['id']}")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator("#batch-name")).to_have_text("nightly")
    await expect(page.locator("#members-body tr")).to_have_count(3)
    waiting = page.locator(f'#members-body tr[data-job-id="{batch["job_ids"][2]}"]')
    await expect(waiting.locator(".status")).to_have_text("waiting")
    await expect(page.locator("#batch-status")).to_have_text("open")
    await tab.mark_document()
    reads_before = len(tab.requests)

    # The bar moves with the running members' own progress, before any member ends.
    await page.wait_for_function(
        """() => {
            const bar = document.getElementById("batch-progress");
            return bar.value > 0 && bar.value < 1
                && document.getElementById("batch-done").textContent === "0 of 3 ended";
        }"""
    )
    await expect(page.locator("#batch-eta")).to_have_text(re.compile(r"^about "))
    await expect(page.locator("#batch-status")).to_have_text("finished")
    await expect(page.locator("#batch-percent")).to_have_text("100%")
    await expect(page.locator("#batch-progress")).to_have_attribute("value", "1")
    await expect(page.locator('[data-batch-count="succeeded"]')).to_have_text("3")
    await expect(page.locator("#live")).to_have_text("finished")
    await expect(waiting.locator(".status")).to_have_text("succeeded")
    await expect(page.locator('#members-body .status:text-is("succeeded")')).to_have_count(3)
    await expect(page.locator("#batch-finished time")).to_be_attached()

    assert await tab.same_document(), "the page was reloaded"
    # Nothing polled: the stream moved the page; the batch was read once more at its end.
    paths = [urlsplit(url).path for url in tab.requests[reads_before:]]
    assert set(paths) <= {f"/batches/{batch['id']}"}, paths
    await unique_landmarks(tab)
    await tab.screenshot("batch")


async def test_the_batch_page_carries_on_across_a_server_restart(
    tab: Tab, server: ServerProcess, worker: Process
) -> None:
    batch = await submit_batch(server.url, [sleeping(20, 0.1) for _ in range(3)])
    page = tab.page
    await page.goto(f"{server.url}/ui/batches/{batch['id']}")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator('[data-batch-count="running"]')).not_to_have_text("0")
    await tab.mark_document()

    await server.stop()  # the worker goes on; transitions land in Postgres meanwhile
    await expect(page.locator("#live")).to_have_text("reconnecting…")
    await server.start()

    await expect(page.locator("#batch-status")).to_have_text("finished")
    await expect(page.locator('[data-batch-count="succeeded"]')).to_have_text("3")
    await expect(page.locator('#members-body .status:text-is("succeeded")')).to_have_count(3)
    assert await tab.same_document(), "the page was reloaded"


async def test_the_member_table_filters_by_status_and_retry_runs_failed_members_again(
    tab: Tab, server: ServerProcess, worker: Process
) -> None:
    batch = await submit_batch(
        server.url, [{"task": "fail", "args": {"message": "no"}}, {"task": "noop"}]
    )
    page = tab.page
    await page.goto(f"{server.url}/ui/batches/{batch['id']}")
    await expect(page.locator("#batch-status")).to_have_text("finished")
    await expect(page.locator('[data-batch-count="failed"]')).to_have_text("1")

    await page.locator("#member-status").select_option("failed")
    await page.locator("#member-status").press("Enter")
    await expect(page).to_have_url(f"{server.url}/ui/batches/{batch['id']}?status=failed")
    rows = page.locator("#members-body tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-job-id", batch["job_ids"][0])
    await expect(page.locator('#batch-counts a[aria-current="page"]')).to_have_attribute(
        "data-status", "failed"
    )

    await page.locator("#retry-batch").click()
    await expect(page.locator("#batch-outcome")).to_have_text("Retried 1 member.")
    # It runs (and fails) again, live, and the batch finishes once more.
    await expect(page.locator("#batch-status")).to_have_text("finished")
    await expect(page.locator("#live")).to_have_text("finished")


async def test_the_batches_list_links_each_batch_and_the_nav_marks_it(
    tab: Tab, server: ServerProcess, worker: Process
) -> None:
    batch = await submit_batch(
        server.url, [{"task": "noop"}], name=f"listed-{uuid.uuid4().hex[:6]}"
    )
    page = tab.page
    await page.goto(f"{server.url}/ui/batches")
    row = page.locator(f'#batches-body tr[data-batch-id="{batch["id"]}"]')
    await expect(row).to_be_visible()
    await expect(page.locator("#nav-batches")).to_have_attribute("aria-current", "page")
    await unique_landmarks(tab)
    await tab.screenshot("batches")
    await row.locator("a").click()
    await expect(page).to_have_url(f"{server.url}/ui/batches/{batch['id']}")
    await expect(page.locator("#batch-status")).to_have_text("finished")


async def test_a_job_page_links_its_batch_parent_dependencies_and_children(
    tab: Tab, server: ServerProcess, worker: Process, pool: asyncpg.Pool
) -> None:
    queue = f"parked-{uuid.uuid4().hex[:6]}"
    batch = await submit_batch(
        server.url,
        [
            {"task": "noop", "queue": queue, "ref": "first"},
            {"task": "noop", "queue": queue, "depends_on": ["first"]},
        ],
        name="family",
    )
    first, second = batch["job_ids"]
    child = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, task, queue, parent_id, batch_id) VALUES ($1, 'noop', $2, $3, $4)",
        child,
        queue,
        uuid.UUID(second),
        uuid.UUID(batch["id"]),
    )
    page = tab.page
    await page.goto(f"{server.url}/ui/jobs/{second}")
    await expect(page.locator("#job-status")).to_have_text("waiting")
    await expect(page.locator("#relations-section")).to_be_visible()
    await expect(page.locator("#rel-batch a")).to_have_attribute(
        "href", f"/ui/batches/{batch['id']}"
    )
    await expect(page.locator("#rel-batch a")).to_contain_text("family")
    dependency = page.locator(f'#rel-deps li[data-job-id="{first}"]')
    await expect(dependency.locator(".status")).to_have_text("queued")
    await expect(dependency.locator("a")).to_have_attribute("href", f"/ui/jobs/{first}")
    await expect(page.locator(f'#rel-children li[data-job-id="{child}"] a')).to_be_visible()
    await unique_landmarks(tab)
    await tab.screenshot("job-relations")

    await page.goto(f"{server.url}/ui/jobs/{child}")
    await expect(page.locator("#rel-parent a")).to_have_attribute("href", f"/ui/jobs/{second}")
    await expect(page.locator("#rel-deps-item")).to_be_hidden()

    await page.goto(f"{server.url}/ui/jobs/{first}")  # no relations but its batch
    await expect(page.locator("#rel-batch a")).to_be_visible()
    await expect(page.locator("#rel-parent-item")).to_be_hidden()


async def test_a_batch_page_for_a_bad_id_is_a_404_page(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        missing = await client.get("/ui/batches/not-a-batch")
        listed = await client.get("/ui/batches")
        one = await client.get(f"/ui/batches/{uuid.uuid4()}")
    assert missing.status_code == 404 and "No such batch" in missing.text
    assert listed.status_code == one.status_code == 200
    for response in (listed, one):
        assert "<script" in response.text and " style=" not in response.text
