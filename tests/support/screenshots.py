"""The dashboard's pictures in docs/images/: `python -m tests.support.screenshots`.

Starts a server and a worker in this process on a database of their own (created from
`TIDINGS_TEST_DATABASE_URL`, Redis at `TIDINGS_TEST_REDIS_URL`; embedded ones when unset),
gives them an hour of history and some live jobs, and photographs the pages with Debian's
Chromium: the filtered list, the trends, a bulk retry's confirmation, and a job's page.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from playwright.async_api import Page, async_playwright, expect

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.paths import REPO_ROOT
from tests.support.servers import start_server, start_worker
from tidings.core.db.migrate import migrate_url
from tidings.core.embedded import start_embedded
from tidings.core.settings import Settings

IMAGES = REPO_ROOT / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 900}
TASKS = {"export_report": "reports", "send_email": "emails", "resize_image": "images"}


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name`."""
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{tail}" if tail else "")


async def admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def seed_history(conn: asyncpg.Connection) -> None:
    """An hour of finished jobs, busier lately, a few failing, for the trends."""
    rng = random.Random(19)
    now = datetime.now(UTC)
    rows = []
    for minute in range(60):
        for _ in range(rng.randint(2, 6) + (60 - minute) // 8):
            task = rng.choice(list(TASKS))
            end = now - timedelta(minutes=minute, seconds=rng.uniform(0, 59))
            run_s = rng.uniform(0.2, 4.0) * (3 if task == "export_report" else 1)
            started = end - timedelta(seconds=run_s)
            due = started - timedelta(seconds=rng.expovariate(4))
            status = rng.choices(["succeeded", "failed", "cancelled"], [90, 8, 2])[0]
            rows.append((uuid.uuid4(), task, TASKS[task], status, due, due, started, end))
    await conn.executemany(
        """INSERT INTO jobs (id, task, queue, status, created_at, run_at, started_at,
                             finished_at, seq, error)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1,
                   CASE WHEN $4 = 'failed' THEN jsonb_build_object(
                       'type', 'TimeoutError', 'message', 'took too long', 'traceback', NULL)
                   END)""",
        rows,
    )
    await conn.executemany(
        "INSERT INTO job_events (job_id, seq, kind, status, attempt)"
        " VALUES ($1, 1, 'queued', 'queued', 1)",
        [(row[0],) for row in rows],
    )


async def shoot(page: Page, name: str, *, full_page: bool = False) -> None:
    path = IMAGES / f"dashboard-{name}.png"
    await page.screenshot(path=path, full_page=full_page)
    print(f"wrote {path.relative_to(REPO_ROOT)}")


async def photograph(url: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        page = await browser.new_page(viewport=VIEWPORT)
        await page.goto(f"{url}/?task_prefix=export")
        await expect(page.locator("#live")).to_have_text("live")
        await expect(page.locator("#page-position")).not_to_be_empty()
        await expect(page.locator("#trends")).to_have_attribute("data-reads", "1")
        await shoot(page, "list")

        await page.goto(f"{url}/")
        await expect(page.locator("#trends")).to_have_attribute("data-reads", "1")
        await page.locator(".trends-more summary").click()
        await page.locator("#trends").screenshot(path=IMAGES / "dashboard-trends.png")
        print("wrote docs/images/dashboard-trends.png")

        await page.goto(f"{url}/?status=failed")
        await expect(page.locator("#jobs-body")).to_have_attribute("aria-busy", "false")
        boxes = page.locator("#jobs-body .select-job")
        for index in range(3):
            await boxes.nth(index).check()
        await page.locator("#bulk-retry").click()
        await expect(page.locator("#bulk-confirm")).to_be_visible()
        await shoot(page, "bulk-confirm")
        await page.locator("#bulk-confirm-keep").click()

        running = page.locator('#jobs-body tr[data-status="running"] th a')
        await page.goto(f"{url}/?status=running")
        await running.first.click()
        await expect(page.locator("#event-log li").first).to_be_attached()
        await page.wait_for_timeout(1500)  # let the progress bar move along for the picture
        await shoot(page, "job")
        await browser.close()


async def main() -> None:
    base, servers = start_embedded(
        Settings(
            database_url=os.environ.get("TIDINGS_TEST_DATABASE_URL", ""),
            redis_url=os.environ.get("TIDINGS_TEST_REDIS_URL", ""),
            data_dir=REPO_ROOT / ".data" / "screenshots",
            log_level="warning",
            auth="off",
        )
    )
    name = f"tidings_shots_{uuid.uuid4().hex[:8]}"
    await admin(base.database_url, f'CREATE DATABASE "{name}"')
    settings = replace(
        base,
        database_url=with_database(base.database_url, name),
        namespace=f"shots{uuid.uuid4().hex[:8]}",
        queues=("default", *TASKS.values()),
    )
    try:
        await migrate_url(settings.database_url)
        conn = await asyncpg.connect(settings.database_url)
        try:
            await seed_history(conn)
        finally:
            await conn.close()
        async with start_server(settings) as server, start_worker(settings):
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                for _ in range(3):
                    await client.post(
                        "/jobs", json={"task": "sleep_steps", "args": {"steps": 60, "delay_s": 1}}
                    )
                for message in ("disk full", "upstream 503"):
                    await client.post("/jobs", json={"task": "fail", "args": {"message": message}})
            IMAGES.mkdir(parents=True, exist_ok=True)
            await photograph(server.url)
    finally:
        await admin(base.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        servers.close()


if __name__ == "__main__":
    asyncio.run(main())
