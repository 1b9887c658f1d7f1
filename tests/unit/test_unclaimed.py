"""Which held attempts the heartbeat hands back as orphans of a lost claim reply."""

from __future__ import annotations

import uuid

from tidings.worker.unclaimed import UnclaimedAttempts

GRACE_S = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def attempt() -> tuple[uuid.UUID, int]:
    return (uuid.uuid4(), 1)


def test_an_attempt_held_and_never_run_here_is_handed_back_after_the_grace() -> None:
    clock = Clock()
    unclaimed = UnclaimedAttempts(GRACE_S, clock)
    orphan = attempt()
    assert unclaimed.orphans({orphan}, set()) == []
    clock.now = GRACE_S - 1
    assert unclaimed.orphans({orphan}, set()) == []
    clock.now = GRACE_S
    assert unclaimed.orphans({orphan}, set()) == [orphan]


def test_an_attempt_seen_running_here_is_never_an_orphan_while_its_outcome_is_on_its_way() -> None:
    clock = Clock()
    unclaimed = UnclaimedAttempts(GRACE_S, clock)
    finished = attempt()
    assert unclaimed.orphans({finished}, {finished}) == []
    # It ended here; Postgres still lists it until the reporter's write lands.
    for second in range(1, 60):
        clock.now = second
        assert unclaimed.orphans({finished}, set()) == []


def test_an_attempt_no_longer_held_is_forgotten_and_a_new_one_starts_its_own_grace() -> None:
    clock = Clock()
    unclaimed = UnclaimedAttempts(GRACE_S, clock)
    first, second = attempt(), attempt()
    unclaimed.orphans({first}, set())
    clock.now = 10
    assert unclaimed.orphans({second}, set()) == []  # first is gone: nothing to hand back
    clock.now = 20
    assert unclaimed.orphans({first, second}, set()) == []  # first starts again at 20
    clock.now = 25
    assert unclaimed.orphans({first, second}, set()) == [second]
    clock.now = 35
    assert unclaimed.orphans({first}, set()) == [first]
