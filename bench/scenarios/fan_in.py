"""12. Fan-in: the last dependency's end -> the dependent's `started` event, idle worker.

A diamond (A -> B, C -> D) is submitted one at a time, then a 1,000-wide fan-in (1,000
noops and one noop that depends on them all). The interval is measured from Postgres'
own timestamps: the last dependency's `succeeded` event to the dependent's `started`.
In between: the trigger that releases the dependent in the dependency's transaction, the
`pg_notify` a worker's listener hears, the token it places, pickup and claim. Each
dependent must start exactly once; the target is 50 ms at the median. Raw ARQ has no
dependencies (its `depends_on` was declined), so there is no raw column.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from bench.jobs import request
from bench.report import Row, Target, latency_rows
from bench.runner import Bench
from tidings.core.submission import JobRequest

SCENARIO = "12 fan-in: last dependency ends -> dependent starts"
TARGET_P50 = Target(at_most=50.0)
DIAMONDS = 50
WIDE = 1_000
WIDE_SAMPLES = 3
SETTLE_S = 1.0

# The dependent's `started` events (exactly one is expected) and its dependencies' last end.
_RELEASE = """
SELECT (SELECT count(*) FROM job_history WHERE job_id = $1 AND kind = 'started') AS starts,
       extract(epoch FROM (SELECT min(at) FROM job_history WHERE job_id = $1 AND kind = 'started')
         - (SELECT max(h.at) FROM job_dependencies d
              JOIN job_history h ON h.job_id = d.depends_on AND h.kind = 'succeeded'
             WHERE d.job_id = $1))::float8 AS latency_s
"""


async def run(bench: Bench) -> list[Row]:
    reps_diamond: list[list[float]] = []
    reps_wide: list[list[float]] = []
    async with bench.services.worker():
        await asyncio.sleep(SETTLE_S)
        for _ in range(bench.config.reps):
            reps_diamond.append([await diamond(bench) for _ in range(DIAMONDS)])
        reps_wide.append([await wide(bench) for _ in range(WIDE_SAMPLES)])
    return [
        *latency_rows(
            f"{SCENARIO} (diamond)",
            reps_diamond,
            f"{DIAMONDS} diamonds one at a time, median of {bench.config.reps}",
            TARGET_P50,
            None,
        ),
        *latency_rows(
            f"{SCENARIO} ({WIDE:,}-wide)",
            reps_wide,
            f"{WIDE_SAMPLES} fan-ins of {WIDE:,} noops, one at a time",
            TARGET_P50,
            None,
        ),
    ]


async def diamond(bench: Bench) -> float:
    """A -> B, C -> D; seconds from the later of B and C ending to D starting."""
    noop = request("noop", None, "default")
    jobs = [
        replace(noop, ref="a"),
        replace(noop, ref="b", depends_on=("a",)),
        replace(noop, ref="c", depends_on=("a",)),
        replace(noop, depends_on=("b", "c")),
    ]
    return await release_latency(bench, jobs)


async def wide(bench: Bench) -> float:
    """1,000 noops and one that depends on all of them."""
    noop = request("noop", None, "default")
    jobs = [replace(noop, ref=f"n{n}") for n in range(WIDE)]
    jobs.append(replace(noop, depends_on=tuple(f"n{n}" for n in range(WIDE))))
    return await release_latency(bench, jobs)


async def release_latency(bench: Bench, jobs: list[JobRequest]) -> float:
    rows = await bench.jobs.submitter.submit_many(jobs)
    ids: list[uuid.UUID] = [row["id"] for row in rows]
    await bench.jobs.wait_finished(ids, within_s=60)
    found = await bench.jobs.pool.fetchrow(_RELEASE, ids[-1])
    assert found is not None
    if found["starts"] != 1:
        raise RuntimeError(f"the dependent started {found['starts']} times")
    latency: float = found["latency_s"]
    return latency
