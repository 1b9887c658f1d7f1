"""Limits that keep one caller from starving the others: request rate and open streams.

The request rate is a token bucket per API key, kept in Redis so that every server
process draws from the same bucket. Streams are counted per process (each process has
its own memory to protect) and per tenant.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from arq.connections import ArqRedis

from core.errors import TidingsError

# KEYS[1] bucket; ARGV: rate per second, burst, now (seconds). Returns {allowed, wait_s}.
TOKEN_BUCKET = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed, wait = 0, (1 - tokens) / rate
if tokens >= 1 then
    tokens, allowed, wait = tokens - 1, 1, 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class TooManyRequests(TidingsError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class TooManyStreams(TidingsError):
    status, code = 429, "too_many_streams"


class ServerBusy(TidingsError):
    status, code = 503, "too_many_streams"
    retry_after_s = 5


class RateLimiter:
    """A shared token bucket per key: `rate_per_s` sustained, `burst` at once."""

    def __init__(self, redis: ArqRedis, namespace: str, rate_per_s: float, burst: int) -> None:
        self._redis = redis
        self._namespace = namespace
        self._rate = rate_per_s
        self._burst = burst
        self._script = redis.register_script(TOKEN_BUCKET)

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    async def check(self, caller: str) -> None:
        """Take one token for `caller`, or raise `TooManyRequests` with the wait."""
        key = f"{self._namespace}:rate:{caller}"
        allowed, wait_s = await self._script(
            keys=[key], args=[self._rate, self._burst, time.time()]
        )
        if not int(allowed):
            raise TooManyRequests("request rate limit exceeded", float(wait_s))


class StreamLimits:
    """Open SSE streams of this process, in total and per tenant."""

    def __init__(self, max_total: int, max_per_tenant: int) -> None:
        self._max_total = max_total
        self._max_per_tenant = max_per_tenant
        self._open: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self._open.total()

    def acquire(self, tenant: str) -> Callable[[], None]:
        """Take one stream slot for `tenant`; returns the function that gives it back."""
        if self.total >= self._max_total:
            raise ServerBusy("this server holds as many streams as it can; try another")
        if self._open[tenant] >= self._max_per_tenant:
            raise TooManyStreams(f"at most {self._max_per_tenant} open streams per tenant")
        self._open[tenant] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[tenant] -= 1
                if not self._open[tenant]:
                    del self._open[tenant]

        return release
