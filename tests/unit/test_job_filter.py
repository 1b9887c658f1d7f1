"""Parsing the job list's filters, and the index range a name prefix becomes."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tidings.core.db.search import _after_prefix
from tidings.core.errors import Unprocessable
from tidings.core.job_filter import parse_filter


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [
        ("send", "sene"),
        ("a_", "a`"),
        ("x\ud7ff", "x\ue000"),  # the next character after U+D7FF is U+E000
        ("ab" + chr(sys.maxunicode), "ac"),  # the last character has no successor
        (chr(sys.maxunicode), None),
    ],
)
def test_a_prefix_ends_where_the_next_name_begins(prefix: str, upper: str | None) -> None:
    assert _after_prefix(prefix) == upper


def test_every_name_with_the_prefix_sorts_inside_the_range() -> None:
    names = ["sen", "send", "send_email", "send\U0010ffff", "sene", "sencha", "sf"]
    upper = _after_prefix("send")
    assert upper is not None
    inside = [name for name in names if b"send" <= name.encode() < upper.encode()]
    assert inside == [name for name in names if name.startswith("send")]


def test_times_keep_their_offset_and_an_empty_name_is_a_name() -> None:
    parsed = parse_filter(
        {"created_after": "2026-01-01T01:00:00+01:00", "created_before": "2026-01-02T00:00:00Z",
         "task": "", "queue_prefix": ""}
    )  # fmt: skip
    assert parsed.created_after == datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert parsed.created_after == datetime(2026, 1, 1, tzinfo=UTC)
    # An empty name matches only the empty name; an empty prefix, every name.
    assert (parsed.task, parsed.queue_prefix, parsed.queue) == ("", "", None)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"created_after": "2026-01-01"}, "created_after"),
        ({"created_before": "now"}, "created_before"),
        ({"task_contains": "ab"}, "task_contains"),
        ({"queue": "q" * 201}, "queue"),
        ({"status": "lost"}, "status"),
        ({"status": ""}, "status"),
        ({"created_after": ""}, "created_after"),
        ({"task_contains": ""}, "task_contains"),
        ({"task": 7}, "task"),
    ],
)
def test_bad_values_name_their_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_filter(values)
    assert caught.value.details["field"] == field
