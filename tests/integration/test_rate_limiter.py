"""The per-key token bucket in Redis, with the checks of concurrent requests batched."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.settings import Settings
from tidings.server.limits import RateLimiter, TooManyRequests


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await queue.connect(settings.redis_url)
    yield redis
    await redis.aclose()


def limiter(redis: ArqRedis, sizes: list[int]) -> RateLimiter:
    """A fresh namespace, so every bucket starts full: 3 at once, then 1 per second."""
    return RateLimiter(redis, f"rl{uuid.uuid4().hex[:8]}", 1.0, 3, on_batch=sizes.append)


async def test_concurrent_checks_share_a_round_trip_and_each_key_its_own_bucket(
    redis: ArqRedis,
) -> None:
    sizes: list[int] = []
    limits = limiter(redis, sizes)
    limits.start()
    try:
        callers = ["a"] * 5 + ["b"] * 2
        outcomes = await asyncio.gather(
            *(limits.check(caller) for caller in callers), return_exceptions=True
        )
    finally:
        await limits.close()

    assert outcomes[:3] == [None, None, None] and outcomes[5:] == [None, None]
    refused = outcomes[3:5]
    assert all(isinstance(outcome, TooManyRequests) for outcome in refused)
    # The first refused check waits for one token to accrue, the second for two.
    assert [getattr(outcome, "retry_after_s", None) for outcome in refused] == [1, 2]
    assert sum(sizes) == len(callers) and len(sizes) < len(callers)


async def test_one_check_at_a_time_drains_the_burst_then_refuses(redis: ArqRedis) -> None:
    sizes: list[int] = []
    limits = limiter(redis, sizes)
    limits.start()
    try:
        for _ in range(3):
            await limits.check("solo")
        with pytest.raises(TooManyRequests) as refused:
            await limits.check("solo")
    finally:
        await limits.close()
    assert refused.value.retry_after_s == 1
    assert sizes == [1, 1, 1, 1]
