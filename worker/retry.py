"""Retry policy as data on the task, and which errors are worth another attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass


class PermanentError(Exception):
    """Raised by a task to fail at once: another attempt would fail the same way."""


# Errors that mean the input is wrong, not the world: retrying cannot help.
PERMANENT_BY_DEFAULT: tuple[type[BaseException], ...] = (
    PermanentError,
    FileNotFoundError,
    ValueError,
    TypeError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits U(0, min(cap, base * factor^(n-1)))."""

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.factor < 1 or self.cap_s < 0:
            raise ValueError("RetryPolicy needs base_s >= 0, factor >= 1 and cap_s >= 0")

    def delay_s(self, failed_attempt: int, rng: random.Random) -> float:
        """Seconds to wait before the attempt after `failed_attempt` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** (failed_attempt - 1))
        return rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def as_json(self) -> dict[str, float | bool]:
        return {
            "base_s": self.base_s,
            "factor": self.factor,
            "cap_s": self.cap_s,
            "jitter": self.jitter,
        }


def is_permanent(exc: BaseException, no_retry: tuple[type[BaseException], ...]) -> bool:
    """True when `exc` should fail the job at once instead of being retried."""
    return isinstance(exc, PERMANENT_BY_DEFAULT + no_retry)
