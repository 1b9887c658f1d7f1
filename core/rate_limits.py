"""Rate limits as a task declares them: `"60/minute"` is a token bucket of 60 tokens,
refilled evenly over a minute.

The bucket itself lives in Postgres (`rate_buckets`, migration 0009) and is taken from by
the claim, so jobs over the limit wait in their queue without holding a worker slot. This
module only reads and writes the declaration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Seconds per unit; a unit may be prefixed by a count ("30/5s", "100/2h").
PERIOD_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
RATE_RULE = "'<count>/<period>', e.g. '60/minute', '10/s', '500/hour', '30/5s'"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")
# More tokens than this in one bucket is not a limit anyone means.
MAX_BURST = 1_000_000


class RateLimitError(ValueError):
    """A rate limit that cannot be read."""


@dataclass(frozen=True)
class RateLimit:
    """`count` starts per `period_s`: a bucket of `count` tokens refilled at `per_s`."""

    count: int
    period_s: float

    @property
    def per_s(self) -> float:
        return self.count / self.period_s

    @property
    def burst(self) -> int:
        return self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


def parse_rate(text: str) -> RateLimit:
    """`"60/minute"` → RateLimit(60, 60.0); anything else is a `RateLimitError`."""
    match = _RATE.match(text.lower()) if isinstance(text, str) else None
    if match is None:
        raise RateLimitError(f"cannot read rate limit {text!r}: expected {RATE_RULE}")
    count, multiple, unit = int(match[1]), float(match[2] or 1), match[3]
    if unit not in PERIOD_UNITS:
        raise RateLimitError(
            f"cannot read rate limit {text!r}: unknown period {unit!r} "
            f"(one of {', '.join(sorted(set(PERIOD_UNITS)))})"
        )
    if not 1 <= count <= MAX_BURST or multiple <= 0:
        raise RateLimitError(
            f"rate limit {text!r} must allow between 1 and {MAX_BURST} per a positive period"
        )
    return RateLimit(count, multiple * PERIOD_UNITS[unit])
