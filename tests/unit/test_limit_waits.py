"""How long the token of a job held back by its key or its rate limit sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.core.fair_waits import rate_starts_in_s
from tidings.worker.limit_waits import (
    KEY_TOKEN_DELAY_S,
    MAX_RATE_DELAY_S,
    MIN_RATE_DELAY_S,
    token_delay_s,
)


def waits(**fields: Any) -> dict[str, Any]:
    row = {"run_at": datetime.now(UTC), "key_full": False, "rate_per_s": None}
    row.update(tokens=None, rate_ahead=None)
    return {**row, **fields}


def test_a_job_waits_for_the_token_its_place_needs() -> None:
    assert rate_starts_in_s(ahead=0, tokens=0.5, per_s=10) == pytest.approx(0.05)
    assert rate_starts_in_s(ahead=9, tokens=0.0, per_s=10) == pytest.approx(1.0)
    assert rate_starts_in_s(ahead=3, tokens=5.0, per_s=10) == 0  # a token is there for it
    assert rate_starts_in_s(ahead=100, tokens=None, per_s=1) == 0  # a bucket not used yet


def test_a_full_key_sleeps_until_a_wake_up_is_overdue() -> None:
    assert token_delay_s(waits(key_full=True)) == KEY_TOKEN_DELAY_S


def test_a_rate_limited_token_sleeps_until_its_turn_within_bounds() -> None:
    turn = waits(rate_per_s=10.0, tokens=0.0, rate_ahead=4)
    assert token_delay_s(turn) == pytest.approx(0.5)
    soon = waits(rate_per_s=1000.0, tokens=0.99, rate_ahead=0)
    assert token_delay_s(soon) == MIN_RATE_DELAY_S
    far = waits(rate_per_s=1.0, tokens=0.0, rate_ahead=10_000)
    assert token_delay_s(far) == MAX_RATE_DELAY_S


def test_other_waits_keep_the_runtimes_retry() -> None:
    assert token_delay_s(waits()) is None
    has_tokens = waits(rate_per_s=10.0, tokens=5.0, rate_ahead=0)
    assert token_delay_s(has_tokens) is None


def test_a_job_not_due_yet_sleeps_until_it_is() -> None:
    later = waits(key_full=True, run_at=datetime.now(UTC) + timedelta(seconds=30))
    assert token_delay_s(later) == pytest.approx(30, abs=0.5)
