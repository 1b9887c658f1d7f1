"""Metric labels taken from tenants' names are capped: later names share `other`."""

from __future__ import annotations

from tidings.server.metrics import OTHER, LabelCap


def test_the_first_names_pass_and_later_ones_become_other() -> None:
    cap = LabelCap(limit=3)
    assert [cap(name) for name in ("a", "b", "a", "c", "d", "e", "b")] == [
        "a",
        "b",
        "a",
        "c",
        OTHER,
        OTHER,
        "b",
    ]
    assert cap.seen == {"a", "b", "c"}
