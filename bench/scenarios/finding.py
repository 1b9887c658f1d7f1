"""14. Finding jobs over 1,000,000: a page of the filtered list, and its position.

The run's database gets a million finished jobs of a tenant of their own: twelve task
names of skewed popularity, seven queues, 5% failed, created over 30 days (the table is
vacuumed after, as autovacuum would leave it). Each sample picks a filter shape at random
(an exact name, a prefix, a substring, a status with a prefix, a day with a substring) and
random values, and times what `GET /jobs` runs for it: the substrings' names looked up,
then the page of 50 newest matches (`read_page`), then, separately, the page's position
(`position_of`, counts up to 100,000). The jobs are left in the run's database, which is
dropped at the end of the run; this scenario runs last so no other one sees them.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.report import Row, Target, latency_rows
from bench.runner import Bench
from tidings.core.db import search
from tidings.core.db.pool import create_pool
from tidings.core.job_filter import parse_filter
from tidings.core.job_pages import position_of, read_page

SCENARIO_PAGE = "14 finding: a filtered page of 50 over 1M jobs"
SCENARIO_POSITION = "14 finding: the page's position (counts to 100,000)"
TARGET = Target(at_most=100.0)
TENANT = "bench-finding"
JOBS = 1_000_000
CHUNK = 100_000  # rows per INSERT, each well inside the pool's statement timeout
SAMPLES = 100
TASKS = [
    "sleep_steps", "embed_documents", "send_email", "export_report", "resize_image", "noop",
    "flaky", "fail", "index_pdf", "sync_crm", "charge_card", "refund_card",
]  # fmt: skip
QUEUES = ["default", "emails", "images", "reports", "billing", "crm", "bulk"]
_FILL = """
INSERT INTO jobs (id, task, queue, tenant, status, created_at, run_at, started_at, finished_at)
SELECT gen_random_uuid(),
       ($2::text[])[1 + floor(power(random(), 2) * array_length($2::text[], 1))::int],
       ($3::text[])[1 + floor(random() * array_length($3::text[], 1))::int],
       $4, CASE WHEN random() < 0.05 THEN 'failed' ELSE 'succeeded' END,
       t, t, t + interval '50 ms', t + interval '1 s' * random()
FROM (SELECT now() - interval '30 days' * random() AS t FROM generate_series(1, $1)) AS g
"""


def random_filter(rng: random.Random) -> dict[str, str]:
    """One of the filter shapes the dashboard sends, with random values."""
    task, queue = rng.choice(TASKS), rng.choice(QUEUES)
    start = rng.randrange(len(task) - 3)
    day = datetime.now(UTC) - timedelta(days=rng.uniform(1, 29))
    shapes = [
        {"task": task},
        {"task_prefix": task[: rng.randint(1, 4)]},
        {"task_contains": task[start : start + 3]},
        {"queue_prefix": queue[: rng.randint(1, 3)]},
        {"queue_contains": queue[-3:]},
        {"status": "failed", "task_prefix": task[:3]},
        {
            "created_after": day.isoformat(),
            "created_before": (day + timedelta(days=1)).isoformat(),
            "task_contains": task[start : start + 3],
        },
    ]
    return rng.choice(shapes)


async def run(bench: Bench) -> list[Row]:
    pool = await create_pool(bench.backing.database_url, max_size=2)
    try:
        for done in range(0, JOBS, CHUNK):
            await pool.execute(_FILL, min(CHUNK, JOBS - done), TASKS, QUEUES, TENANT, timeout=600)
        await pool.execute("VACUUM ANALYZE jobs", timeout=600)
        rng = random.Random(14)
        pages, positions = [], []
        for _ in range(bench.config.reps):
            page_s, position_s = await sample(pool, rng)
            pages.append(page_s)
            positions.append(position_s)
    finally:
        await pool.close()
    note = f"{SAMPLES} random filters per rep over {JOBS:,} jobs, median of {bench.config.reps}"
    return [
        *latency_rows(SCENARIO_PAGE, pages, note, TARGET, TARGET),
        *latency_rows(SCENARIO_POSITION, positions, note, None, None),
    ]


async def sample(pool: asyncpg.Pool, rng: random.Random) -> tuple[list[float], list[float]]:
    """Seconds per page read and per position count, one random filter each."""
    page_s, position_s = [], []
    for _ in range(SAMPLES):
        job_filter = parse_filter(random_filter(rng))
        started = time.perf_counter()
        resolved = await search.resolve(pool, tenant=TENANT, job_filter=job_filter)
        page = await read_page(pool, tenant=TENANT, resolved=resolved, limit=50)
        page_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        await position_of(pool, tenant=TENANT, resolved=resolved, page=page)
        position_s.append(time.perf_counter() - started)
    return page_s, position_s
