"""16. Keyed rate limits: a backlog drains at the bucket's rate, without spinning.

600 noops (200 with `--quick`) that share one rate key of 100 starts/s (a bucket of 100)
are queued at once on one worker. After the first burst of 100, they must start at the
limit's rate (90% to 102% of it), and the tokens of the jobs held back must not spin: the
claims the bucket refuses, per job it held back, stay at 3 or fewer.
"""

from __future__ import annotations

import uuid

from bench.report import Row, Target
from bench.runner import Bench
from tidings.core import queue
from tidings.core.concurrency_keys import KeyedFields
from tidings.core.submission import JobRequest, Submitter

SCENARIO = "16 rate limits"
JOBS, QUICK_JOBS = 600, 200
PER_S = 100.0
BURST = 100
RATE_TARGET = Target(at_least=0.90, at_most=1.02)
REFUSALS_TARGET = Target(at_most=3.0)

_STARTS = """
SELECT extract(epoch FROM e.at)::float8 AS at
FROM job_history e JOIN jobs j ON j.id = e.job_id
WHERE j.rate_key = $1 AND e.kind = 'started'
ORDER BY e.at
"""
_REFUSED = "SELECT limited FROM rate_buckets WHERE key = $1"


async def run(bench: Bench) -> list[Row]:
    count = JOBS if bench.config.noop_jobs >= 3_000 else QUICK_JOBS
    key = f"bench-rate-{uuid.uuid4().hex[:6]}"
    keys = KeyedFields(rate_key=key, rate_per_s=PER_S, rate_burst=BURST)
    request = JobRequest(
        task="noop", args={}, queue="default", max_attempts=1, timeout_s=600.0, keys=keys
    )
    redis = await queue.connect(bench.backing.redis_url)
    try:
        submitter = Submitter(bench.jobs.pool, redis, queue.Names(bench.backing.namespace))
        async with bench.services.worker():
            rows = await submitter.submit_many([request] * count)
            ids = [row["id"] for row in rows]
            await bench.jobs.wait_finished(ids, 30 + count / PER_S * 2)
    finally:
        await redis.aclose()
    starts = [row["at"] for row in await bench.jobs.pool.fetch(_STARTS, key)]
    refused = await bench.jobs.pool.fetchval(_REFUSED, key)
    after_burst = starts[BURST:]
    # The bucket refills from the first start on: start k (k > burst) is due at
    # (k - burst) / rate after it, so the rate is measured from the first start.
    sustained = (len(after_burst)) / (after_burst[-1] - starts[0])
    held_back = count - BURST
    note = (
        f"{count} noops on one rate key of {PER_S:g}/s (bucket {BURST}), one worker "
        f"(max_jobs {bench.config.concurrency}); {len(starts)} started over "
        f"{starts[-1] - starts[0]:.2f} s"
    )
    return [
        Row(
            SCENARIO,
            "start rate after the burst / limit",
            "x",
            sustained / PER_S,
            target=RATE_TARGET,
            note=note,
            reps={"starts_per_s": [sustained]},
        ),
        Row(
            SCENARIO,
            "claims refused per job held back",
            "",
            refused / held_back,
            target=REFUSALS_TARGET,
            note=f"{refused} refusals for {held_back} jobs over the burst",
            reps={"refused": [refused]},
        ),
    ]
