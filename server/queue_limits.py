"""The concurrency keys and rate limits of each queue, as `GET /queues` shows them."""

from __future__ import annotations

from typing import Any

import asyncpg

from tidings.core.concurrency_keys import unscoped_key
from tidings.core.db import fairness
from tidings.core.shapes import KeyState, RateState

# A queue lists at most this many keys (those with the most running first) and buckets.
MAX_SHOWN = 200


async def add_limits(pool: asyncpg.Pool, queues: list[dict[str, Any]], tenant: str | None) -> None:
    """Give each queue its keys with running or waiting jobs (`concurrency_keys`) and the
    rate buckets its waiting jobs draw on (`rate_limits`), of `tenant`'s jobs."""
    keys: dict[str, list[KeyState]] = {}
    for row in await fairness.key_stats(pool, tenant=tenant, limit=MAX_SHOWN):
        keys.setdefault(row["queue"], []).append(
            {
                "key": unscoped_key(row["concurrency_key"]),
                "running": row["running"],
                "waiting": row["waiting"],
                "max_per_key": row["max_per_key"],
            }
        )
    rates: dict[str, list[RateState]] = {}
    for row in await fairness.rate_stats(pool, tenant=tenant, limit=MAX_SHOWN):
        rates.setdefault(row["queue"], []).append(
            {
                "key": row["key"],
                "tokens": round(row["tokens"], 3),
                "burst": row["burst"],
                "per_s": row["per_s"],
                "waiting": row["waiting"],
                "limited": row["limited"],
            }
        )
    for queue in queues:
        queue["concurrency_keys"] = keys.get(queue["queue"], [])
        queue["rate_limits"] = rates.get(queue["queue"], [])
