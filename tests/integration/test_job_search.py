"""Finding a job by the first hex digits of its id: exactly the tenant's jobs whose id text
starts with them, read from a range of the primary key's index even over 1,000,000 jobs."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import pytest

from tidings.core.db import search
from tidings.core.errors import Unprocessable
from tidings.core.job_filter import JobFilter
from tidings.core.job_lookup import id_prefix_range

GENERATED = 1_000_000
# Writing the million rows (every index of `jobs` takes them) is most of this module's time.
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
# Ids sharing prefixes on purpose: two of `default`'s share 8 digits, one of `other`'s too.
NEIGHBOURS = {
    "abcdef01-0000-4000-8000-000000000001": "default",
    "abcdef01-0000-4000-8000-000000000002": "default",
    "abcdef02-0000-4000-8000-000000000003": "default",
    "abcdef01-0000-4000-8000-000000000004": "other",
}


class StatementRecorder:
    """Stands in for the pool in `search.list_matching`, keeping the statement it sends."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        self.sent.append((sql, params))
        return list(await self.pool.fetch(sql, *params))


@pytest.fixture(scope="module")
async def searchable(pool: asyncpg.Pool) -> None:
    """About a million random ids of `default` (none starting like the neighbours), and the
    neighbours above."""
    # One microsecond apart, as jobs arrive, not all at one instant: the indexes ordered by
    # created_at then grow at one end instead of taking a million entries at random places.
    await pool.execute(
        "INSERT INTO jobs (id, task, queue, tenant, status, created_at)"
        " SELECT id, 'noop', 'parked', 'default', 'succeeded', created_at"
        " FROM (SELECT gen_random_uuid() AS id, now() - n * interval '1 microsecond' AS created_at"
        "       FROM generate_series(1, $1) AS n) AS generated"
        " WHERE NOT starts_with(id::text, 'abcdef')",
        GENERATED,
        timeout=600,  # the pool's 30 s is for requests, not for a million rows on a busy machine
    )
    await pool.executemany(
        "INSERT INTO jobs (id, task, queue, tenant) VALUES ($1, 'noop', 'parked', $2)",
        [(uuid.UUID(job_id), tenant) for job_id, tenant in NEIGHBOURS.items()],
    )
    await pool.execute("ANALYZE jobs")


def by_prefix(prefix: str) -> search.Resolved:
    return search.Resolved(JobFilter(id_between=id_prefix_range(prefix)))


async def found(pool: asyncpg.Pool, prefix: str, tenant: str = "default") -> set[str]:
    rows = await search.list_matching(pool, tenant=tenant, resolved=by_prefix(prefix), limit=500)
    return {str(row["id"]) for row in rows}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("abcdef", set(list(NEIGHBOURS)[:3])),
        ("ABCDEF01", set(list(NEIGHBOURS)[:2])),
        ("abcdef01-0000-4000-8000-000000000002", {list(NEIGHBOURS)[1]}),
        ("abcdef0100004000", set(list(NEIGHBOURS)[:2])),  # dashes may be left out
        ("abcdef03", set()),
    ],
)
async def test_a_prefix_finds_the_tenants_jobs_whose_id_starts_with_it(
    pool: asyncpg.Pool, searchable: None, prefix: str, expected: set[str]
) -> None:
    assert await found(pool, prefix) == expected


async def test_another_tenants_job_is_never_found(pool: asyncpg.Pool, searchable: None) -> None:
    assert await found(pool, "abcdef", tenant="other") == {list(NEIGHBOURS)[3]}
    assert await found(pool, "abcdef01-0000-4000-8000-000000000004") == set()


async def test_a_random_jobs_prefix_finds_exactly_the_ids_that_start_with_it(
    pool: asyncpg.Pool, searchable: None
) -> None:
    sample = [str(row["id"]) for row in await pool.fetch("SELECT id FROM jobs LIMIT 20")]
    for job_id in sample:
        prefix = job_id[:6]
        # The slow, obvious answer: every id's text, read one by one.
        expected = await pool.fetch(
            "SELECT id FROM jobs WHERE tenant = 'default' AND starts_with(id::text, $1)", prefix
        )
        assert await found(pool, prefix) == {str(row["id"]) for row in expected}


@pytest.mark.parametrize("raw", ["abcde", "abcdeg", "", "abc def", "a" * 33, "0x1234567"])
def test_too_short_or_not_hex_is_refused(raw: str) -> None:
    with pytest.raises(Unprocessable):
        id_prefix_range(raw)


async def test_over_a_million_jobs_the_lookup_reads_the_primary_key_in_under_100_ms(
    pool: asyncpg.Pool, searchable: None
) -> None:
    recorder = StatementRecorder(pool)
    for prefix in ("abcdef", "abcdef03", "0123456"):  # several, none and a random few
        await search.list_matching(
            recorder,
            tenant="default",
            resolved=by_prefix(prefix),
            limit=50,
        )
        sql, params = recorder.sent[-1]
        plan = "\n".join(row[0] for row in await pool.fetch(f"EXPLAIN {sql}", *params))
        assert "jobs_pkey" in plan, plan
        assert "Seq Scan" not in plan, plan
        started = time.perf_counter()
        await pool.fetch(sql, *params)
        assert time.perf_counter() - started < 0.1
