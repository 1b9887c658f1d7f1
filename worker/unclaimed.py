"""Attempts Postgres says this worker holds, though no claim of its own ever returned them.

A claim commits in Postgres and then its reply travels back; if the connection breaks in
between (a pooler restarted, a network cut), the worker sees an error and puts the tokens
back, while Postgres has the jobs `running` on this worker. The reaper never takes them:
this worker beats. The heartbeat lists what Postgres says it holds; an attempt listed for
`grace_s` of successful beats, never seen running here in that time, is such an orphan and
is handed back. The grace outlasts an outcome still on its way to Postgres (the reporter
retries within seconds once Postgres answers), and seeing an attempt run here once rules
it out for good.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

Attempt = tuple[uuid.UUID, int]

# Twice the reporter's longest retry delay, many heartbeats long.
UNCLAIMED_AFTER_S = 10.0


class UnclaimedAttempts:
    """Decides, beat by beat, which held attempts are orphans of a lost claim reply."""

    def __init__(
        self, grace_s: float = UNCLAIMED_AFTER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._grace_s = grace_s
        self._clock = clock
        self._since: dict[Attempt, float] = {}
        self._seen_running: set[Attempt] = set()

    def orphans(self, held: set[Attempt], running: set[Attempt]) -> list[Attempt]:
        """After a successful beat: the held attempts to hand back now.

        `running` is what ran here around the beat (taken before and after it), so an
        attempt claimed while the beat was in flight is not mistaken for an orphan.
        """
        now = self._clock()
        self._seen_running = (self._seen_running | (running & held)) & held
        candidates = held - running - self._seen_running
        self._since = {attempt: self._since.get(attempt, now) for attempt in candidates}
        due = sorted(a for a, since in self._since.items() if now - since >= self._grace_s)
        for attempt in due:
            del self._since[attempt]
        return due
