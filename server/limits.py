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

from tidings.core.errors import TidingsError
from tidings.server.batching import Batcher

# KEYS[1] bucket; ARGV: rate per second, burst, now (seconds), tokens wanted.
# Takes as many of the wanted tokens as the bucket holds; returns {taken, tokens left}.
TOKEN_BUCKET = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = math.min(wanted, math.floor(tokens))
tokens = tokens - taken
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {taken, tostring(tokens)}
"""


class TooManyRequests(TidingsError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class TooManyStreams(TidingsError):
    status, code = 429, "too_many_streams"
    retry_after_s = 5  # a stream slot frees when one of the tenant's streams ends


class ServerBusy(TidingsError):
    status, code = 503, "too_many_streams"
    retry_after_s = 5


class Lockouts:
    """Addresses whose failed credentials ran past the rate, refused until their wait ends.

    A 429 that still let the next guess be checked would only slow an attacker down; a
    locked-out address is refused before any credential is looked at, so a correct guess
    made during the lockout is refused too. Per server process, at most `max_entries`
    addresses (the soonest to end make room).
    """

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._until: dict[str, float] = {}
        self._max_entries = max_entries
        self._clock = clock

    def check(self, address: str) -> None:
        """Raise `TooManyRequests` while `address` is locked out."""
        until = self._until.get(address)
        if until is None:
            return
        wait_s = until - self._clock()
        if wait_s > 0:
            raise TooManyRequests("too many failed credentials from this address", wait_s)
        del self._until[address]

    def lock(self, address: str, wait_s: float) -> None:
        """Refuse `address` for `wait_s` seconds."""
        if address not in self._until and len(self._until) >= self._max_entries:
            del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[address] = self._clock() + wait_s


class RateLimiter:
    """A shared token bucket per key: `rate_per_s` sustained, `burst` at once.

    Checks that arrive together are batched (`server.batching`): one script call per key
    takes that key's tokens for all of them, in arrival order, in one round trip.
    """

    def __init__(
        self,
        redis: ArqRedis,
        namespace: str,
        rate_per_s: float,
        burst: int,
        *,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._rate = rate_per_s
        self._burst = burst
        self._script = redis.register_script(TOKEN_BUCKET)
        self._batcher: Batcher[str, float | None] = Batcher(
            self._take, name="tidings-rate-limiter", on_batch=on_batch
        )

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def start(self) -> None:
        """Start batching checks."""
        self._batcher.start()

    async def close(self) -> None:
        """Answer every check made so far, then stop batching."""
        await self._batcher.close()

    async def check(self, caller: str) -> None:
        """Take one token for `caller`, or raise `TooManyRequests` with the wait."""
        if self._batcher.running:
            wait_s = await self._batcher.call(caller)
        else:
            [wait_s] = await self._take([caller])
        if wait_s is not None:
            raise TooManyRequests("request rate limit exceeded", wait_s)

    async def _take(self, callers: list[str]) -> list[float | None]:
        """Per check: None if it got a token, else the seconds until one is free for it."""
        wanted = Counter(callers)
        now = time.time()
        calls = [
            ([f"{self._namespace}:rate:{caller}"], [self._rate, self._burst, now, count])
            for caller, count in wanted.items()
        ]
        if len(calls) == 1:  # the usual case; a pipeline would first ask for the script
            [(keys, args)] = calls
            replies = [await self._script(keys=keys, args=args)]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await self._script(keys=keys, args=args, client=pipe)
                replies = await pipe.execute()
        buckets = {
            caller: (int(taken), float(left))
            for caller, (taken, left) in zip(wanted, replies, strict=True)
        }
        seen: Counter[str] = Counter()
        outcomes: list[float | None] = []
        for caller in callers:
            taken, left = buckets[caller]
            seen[caller] += 1
            # The n-th refused check of a key waits until n more tokens have accrued.
            refused = seen[caller] - taken
            outcomes.append(None if refused <= 0 else (refused - left) / self._rate)
        return outcomes


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
