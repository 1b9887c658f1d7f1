"""Why a queued job waits on its concurrency key or its rate limit, and until when.

`GET /jobs/{id}` says so in `waiting_reason` (`"concurrency_key"` or `"rate_limit"`), and
for a rate-limited job adds to its ETA the time its bucket needs to reach it: its place
among the key's due jobs, less the tokens the bucket holds, at the bucket's rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from tidings.core.db import fairness

CONCURRENCY_KEY = "concurrency_key"
RATE_LIMIT = "rate_limit"


@dataclass(frozen=True)
class LimitWait:
    """What holds a queued job back: `reason` (None: nothing of its limits) and, for a rate
    limit, `starts_in_s` (seconds until its bucket has a token for it)."""

    reason: str | None
    starts_in_s: float | None = None


def rate_starts_in_s(ahead: int, tokens: float | None, per_s: float) -> float:
    """Seconds until the bucket has a token for the job with `ahead` due jobs before it."""
    available = float(tokens) if tokens is not None else float("inf")  # unused: full
    return max(0.0, (ahead + 1 - available) / per_s)


async def limit_wait(pool: asyncpg.Pool, row: asyncpg.Record | Mapping[str, Any]) -> LimitWait:
    """Whether the queued job `row` waits on its key or its rate bucket (key first)."""
    if row["concurrency_key"] is None and row["rate_key"] is None:
        return LimitWait(None)
    state = await fairness.waiting_state(
        pool,
        concurrency_key=row["concurrency_key"],
        rate_key=row["rate_key"],
        priority=row["priority"],
        run_at=row["run_at"],
        created_at=row["created_at"],
        job_id=row["id"],
    )
    if row["concurrency_key"] is not None and state["key_running"] >= (row["max_per_key"] or 1):
        return LimitWait(CONCURRENCY_KEY)
    if row["rate_key"] is not None and row["rate_per_s"]:
        starts_in_s = rate_starts_in_s(state["rate_ahead"], state["tokens"], row["rate_per_s"])
        if starts_in_s > 0:
            return LimitWait(RATE_LIMIT, round(starts_in_s, 3))
    return LimitWait(None)
