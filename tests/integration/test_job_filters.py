"""Finding jobs through `GET /jobs`: task and queue names by prefix and by substring, a
created-at range, pages both ways with a jump to the oldest, and the page's position."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.servers import ServerHandle
from tidings.core.job_filter import parse_filter

START = datetime(2026, 1, 1, tzinfo=UTC)
# (task, queue) of the jobs, one minute apart, oldest first.
NAMES = [
    ("send_email", "emails"),
    ("send_sms", "texts"),
    ("resize_image", "images"),
    ("refund_card", "billing"),
    ("charge_card", "billing"),
    ("a_b%c", "odd"),  # LIKE's wildcards in a name are matched literally
    ("axbyc", "odd"),
]
PAGED = 23  # jobs of task `paged`, for paging


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> dict[str, str]:
    """The named jobs (name -> id), the paged ones, and one of another tenant."""
    ids = {}
    for minute, (task, queue) in enumerate(NAMES):
        job_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO jobs (id, task, queue, created_at, status) VALUES ($1, $2, $3, $4, $5)",
            job_id,
            task,
            queue,
            START + timedelta(minutes=minute),
            "failed" if task.endswith("card") else "succeeded",
        )
        ids[task] = str(job_id)
    await pool.executemany(
        "INSERT INTO jobs (id, task, queue, created_at) VALUES ($1, 'paged', 'paging', $2)",
        [(uuid.uuid4(), START + timedelta(days=1, seconds=n)) for n in range(PAGED)],
    )
    await pool.execute(
        "INSERT INTO jobs (id, task, queue, tenant) VALUES ($1, 'send_email', 'emails', 'other')",
        uuid.uuid4(),
    )
    return ids


@pytest.fixture
async def client(server: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def listed(client: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    response = await client.get("/jobs", params={"limit": 100, **query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def tasks_of(client: httpx.AsyncClient, **query: Any) -> list[str]:
    return [job["task"] for job in (await listed(client, **query))["jobs"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"task_prefix": "send"}, ["send_sms", "send_email"]),
        ({"task_prefix": "send_e"}, ["send_email"]),
        ({"task": "send"}, []),  # `task` stays an exact name
        ({"task_contains": "card"}, ["charge_card", "refund_card"]),
        ({"task_contains": "_b%"}, ["a_b%c"]),
        ({"queue_prefix": "bil"}, ["charge_card", "refund_card"]),
        ({"queue_contains": "mage"}, ["resize_image"]),
        ({"queue_contains": "ill", "task_prefix": "ref"}, ["refund_card"]),
        ({"task_contains": "card", "status": "failed"}, ["charge_card", "refund_card"]),
        ({"task_prefix": "SEND"}, []),  # names are case-sensitive
    ],
)
async def test_names_match_by_prefix_and_by_substring(
    client: httpx.AsyncClient, seeded: dict[str, str], query: dict[str, str], expected: list[str]
) -> None:
    assert await tasks_of(client, **query) == expected


async def test_a_created_at_range_takes_its_start_and_leaves_its_end(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    after = (START + timedelta(minutes=1)).isoformat()
    before = (START + timedelta(minutes=3)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert await tasks_of(client, created_after=after, created_before=before) == [
        "resize_image",
        "send_sms",
    ]
    # The same instant written with another offset.
    in_paris = (START + timedelta(minutes=6)).astimezone(timezone(timedelta(hours=1)))
    assert await tasks_of(client, created_after=in_paris.isoformat()) == ["paged"] * PAGED + [
        "axbyc"
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2026-01-01T00:00:00"}, "created_after"),  # no offset
        ({"created_before": "2026-13-01T00:00:00Z"}, "created_before"),
        (
            {"created_after": "2026-01-02T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"},
            "created_before",
        ),
        ({"task_contains": "ca"}, "task_contains"),  # shorter than a trigram
        ({"queue_prefix": "x" * 201}, "queue_prefix"),
        ({"task_prefix": "a\x00"}, "task_prefix"),
        ({"page": "middle"}, "page"),
        ({"page": "oldest", "cursor": "abc"}, "page"),
        ({"position": "yes"}, "position"),
        ({"status": "lost"}, "status"),
    ],
)
async def test_bad_filters_are_a_422_naming_the_field(
    client: httpx.AsyncClient, query: dict[str, str], field: str
) -> None:
    response = await client.get("/jobs", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


async def test_another_tenants_jobs_never_match(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    assert await tasks_of(client, task_contains="email") == ["send_email"]


async def page_ids(body: dict[str, Any]) -> list[str]:
    return [job["id"] for job in body["jobs"]]


async def test_pages_go_both_ways_and_the_oldest_is_one_jump_away(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    everything = await listed(client, task="paged", limit=PAGED)
    newest_first = await page_ids(everything)
    assert len(newest_first) == PAGED

    first = await listed(client, task="paged", limit=10, position="true")
    assert await page_ids(first) == newest_first[:10]
    assert first["prev_cursor"] is None
    assert first["position"] == {
        "first": 1,
        "last": 10,
        "total": PAGED,
        "total_exact": True,
        "cap": 100_000,
    }
    second = await listed(
        client, task="paged", limit=10, position="true", cursor=first["next_cursor"]
    )
    assert await page_ids(second) == newest_first[10:20]
    assert (second["position"]["first"], second["position"]["last"]) == (11, 20)

    oldest = await listed(client, task="paged", limit=10, position="true", page="oldest")
    assert await page_ids(oldest) == newest_first[-10:]  # still newest first within the page
    assert oldest["next_cursor"] is None
    assert (oldest["position"]["first"], oldest["position"]["last"]) == (PAGED - 9, PAGED)

    newer = await listed(
        client, task="paged", limit=10, position="true", cursor=oldest["prev_cursor"]
    )
    assert await page_ids(newer) == newest_first[3:13]
    assert (newer["position"]["first"], newer["position"]["last"]) == (4, 13)
    newest = await listed(client, task="paged", limit=10, cursor=newer["prev_cursor"])
    assert await page_ids(newest) == newest_first[:3]
    assert newest["prev_cursor"] is None
    assert newest["next_cursor"] is not None


async def test_a_cursor_issued_before_newer_cursors_existed_still_reads_older_jobs(
    client: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    newest_first = await page_ids(await listed(client, task="paged", limit=PAGED))
    fifth = (await listed(client, task="paged", limit=5))["jobs"][-1]
    created = datetime.fromisoformat(fifth["created_at"]).isoformat()
    old_style = base64.urlsafe_b64encode(f"{created}|{fifth['id']}".encode()).decode().rstrip("=")
    assert (
        await page_ids(await listed(client, task="paged", limit=5, cursor=old_style))
        == (newest_first[5:10])
    )


async def test_counts_stop_at_the_cap_and_say_so(
    client: httpx.AsyncClient, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidings.core import job_pages

    monkeypatch.setattr(job_pages, "COUNT_CAP", 5)
    second = await listed(client, task="paged", limit=5, position="true")
    assert second["position"] == {
        "first": 1,
        "last": 5,
        "total": 5,
        "total_exact": False,
        "cap": 5,
    }
    later = await listed(client, task="paged", limit=5, position="true", page="oldest")
    assert later["position"]["first"] is None
    assert later["position"]["total_exact"] is False


async def test_a_count_that_takes_too_long_is_given_up_not_waited_for(
    pool: asyncpg.Pool, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidings.core.db import search

    plain = search.where_of

    def slow(tenant: str, resolved: search.Resolved) -> search.Where:
        where = plain(tenant, resolved)
        where.add("pg_sleep({}) IS NOT NULL", 0.5)  # a condition no index answers, slowly
        return where

    resolved = await search.resolve(pool, tenant="default", job_filter=parse_filter({}))
    async with pool.acquire() as conn:
        assert (
            await search.count_up_to(
                conn, tenant="default", resolved=resolved, cap=5, within_ms=10_000
            )
            == 5
        )
        monkeypatch.setattr(search, "where_of", slow)
        started = time.perf_counter()
        assert (
            await search.count_up_to(
                conn, tenant="default", resolved=resolved, cap=5, within_ms=100
            )
            is None
        )
        assert time.perf_counter() - started < 0.45
        # The connection is usable afterwards: the timeout was local to its transaction.
        assert await conn.fetchval("SHOW statement_timeout") == "0"
