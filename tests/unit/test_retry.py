"""The retry policy as data: backoff delays, valid policies, and which errors are permanent."""

from __future__ import annotations

import random

import pytest

from tidings.worker.retry import PermanentError, RetryPolicy, is_permanent


class QuotaExceeded(RuntimeError):
    """A task-specific error that a task lists in `no_retry`."""


# --- delay_s --------------------------------------------------------------------------------


def test_without_jitter_the_delay_is_base_times_factor_to_the_failed_attempt_minus_one() -> None:
    policy = RetryPolicy(base_s=0.5, factor=3.0, cap_s=1000.0, jitter=False)
    rng = random.Random(0)
    assert [policy.delay_s(n, rng) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_without_jitter_the_delay_stops_growing_at_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, factor=2.0, cap_s=5.0, jitter=False)
    rng = random.Random(0)
    assert [policy.delay_s(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_without_jitter_the_random_source_is_not_used() -> None:
    policy = RetryPolicy(base_s=1.0, jitter=False)
    rng = random.Random(7)
    before = rng.getstate()
    policy.delay_s(3, rng)
    assert rng.getstate() == before


def test_a_factor_of_one_gives_a_constant_delay() -> None:
    policy = RetryPolicy(base_s=0.25, factor=1.0, jitter=False)
    assert {policy.delay_s(n, random.Random(0)) for n in range(1, 20)} == {0.25}


def test_a_zero_base_retries_at_once() -> None:
    policy = RetryPolicy(base_s=0.0, jitter=False)
    assert policy.delay_s(4, random.Random(0)) == 0.0
    assert RetryPolicy(base_s=0.0).delay_s(4, random.Random(0)) == 0.0


def test_the_defaults_are_one_second_doubling_to_five_minutes_with_jitter() -> None:
    assert RetryPolicy().as_json() == {"base_s": 1.0, "factor": 2.0, "cap_s": 300.0, "jitter": True}


@pytest.mark.parametrize("failed_attempt", [1, 2, 3, 6, 12, 40])
def test_with_jitter_each_delay_lies_between_zero_and_the_capped_ceiling(
    failed_attempt: int,
) -> None:
    policy = RetryPolicy(base_s=0.5, factor=2.0, cap_s=60.0, jitter=True)
    ceiling = min(60.0, 0.5 * 2.0 ** (failed_attempt - 1))
    rng = random.Random(failed_attempt)
    delays = [policy.delay_s(failed_attempt, rng) for _ in range(2000)]
    assert all(0.0 <= delay <= ceiling for delay in delays)
    # Full jitter spreads over the whole range, not a band near the ceiling.
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling


def test_with_jitter_the_same_seed_gives_the_same_delays() -> None:
    policy = RetryPolicy(base_s=1.0, factor=2.0, cap_s=30.0)
    first = [policy.delay_s(n, random.Random(42)) for n in range(1, 10)]
    again = [policy.delay_s(n, random.Random(42)) for n in range(1, 10)]
    assert first == again
    # Each draw is uniform over [0, ceiling]: the same as the seeded generator's own draw.
    expected = [random.Random(42).uniform(0.0, min(30.0, 2.0 ** (n - 1))) for n in range(1, 10)]
    assert first == expected


# --- invalid policies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"base_s": -0.001},
        {"factor": 0.999},
        {"factor": 0.0},
        {"cap_s": -1.0},
    ],
)
def test_an_unusable_policy_is_rejected(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy needs"):
        RetryPolicy(**fields)


def test_the_boundary_values_are_accepted() -> None:
    policy = RetryPolicy(base_s=0.0, factor=1.0, cap_s=0.0)
    assert policy.delay_s(5, random.Random(0)) == 0.0


# --- is_permanent ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError("bad input"),
        FileNotFoundError("no such file"),
        ValueError("not a number"),
        TypeError("wrong type"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_input_errors_are_permanent_by_default(exc: BaseException) -> None:
    assert is_permanent(exc, ())


def test_subclasses_of_permanent_errors_are_permanent() -> None:
    class Unparseable(PermanentError):
        pass

    assert is_permanent(Unparseable(), ())
    assert is_permanent(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), ())  # a ValueError


@pytest.mark.parametrize(
    "exc",
    [
        OSError("disk hiccup"),
        TimeoutError("timed out"),
        ConnectionError("reset by peer"),
        ConnectionRefusedError("refused"),
        RuntimeError("something odd"),
        QuotaExceeded("over quota"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_world_errors_are_retried_by_default(exc: BaseException) -> None:
    assert not is_permanent(exc, ())


def test_a_type_listed_in_no_retry_is_permanent_and_only_for_that_task() -> None:
    assert is_permanent(QuotaExceeded("over quota"), (QuotaExceeded,))
    assert not is_permanent(QuotaExceeded("over quota"), ())
    # Listing one type does not make unrelated transient errors permanent.
    assert not is_permanent(ConnectionError("reset"), (QuotaExceeded,))
