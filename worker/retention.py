"""The pruner: finished jobs, with their events, are deleted once their retention has passed.

Every worker runs one (and `tidings prune` runs one on demand). Each batch is one short
transaction that takes the retention advisory lock, so one process prunes at a time, and
deletes a bounded number of expired jobs that no one else holds (`FOR UPDATE SKIP
LOCKED`). A pass repeats batches until one deletes nothing, or until another process
holds the lock (it is pruning: this pass has nothing to add). Only finished rows are
locked, which pickup never reads, so claims do not wait on a prune; a batch is a few
tens of milliseconds (docs/decisions.md has the numbers).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import structlog

from tidings.core.db import fairness, locks, retention
from tidings.core.model import Status
from tidings.core.settings import Settings

log = structlog.get_logger("tidings.retention")


@dataclass(frozen=True)
class Retention:
    """How long finished jobs are kept, by status; a task's own `retain_s` overrides it."""

    succeeded_s: float
    failed_s: float
    cancelled_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            settings.retain_succeeded_s, settings.retain_failed_s, settings.retain_cancelled_s
        )

    @property
    def by_status(self) -> dict[str, float]:
        """Seconds to keep a job, by the status it finished in."""
        return {
            Status.SUCCEEDED.value: self.succeeded_s,
            Status.FAILED.value: self.failed_s,
            Status.CANCELLED.value: self.cancelled_s,
        }


@dataclass
class Pruned:
    """What a pass deleted: jobs by status, their events, and in how many batches."""

    jobs: Counter[str] = field(default_factory=Counter)
    events: int = 0
    batches: int = 0
    turns: int = 0  # round-robin turns of groups long idle (`fair_turns`)

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())


# A round-robin group's last turn is forgotten once it has not been served for this long:
# every group served since is more recent, so it would come first again either way.
FAIR_TURN_IDLE_S = 3600.0

OnPruned = Callable[[Mapping[str, int], int], None]
OnOldest = Callable[[float | None], None]


def _ignore(*_: object) -> None:
    pass


class Pruner:
    """Deletes expired finished jobs in bounded batches; see the module's docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: Retention,
        *,
        batch_jobs: int,
        batch_events: int,
        wait_for_lock: bool = False,
        on_pruned: OnPruned = _ignore,
        on_oldest: OnOldest = _ignore,
    ) -> None:
        """`wait_for_lock`: wait for another pruner's batch to end rather than leave the
        pass to it (an operator's `tidings prune`). `on_pruned(jobs_by_status, events)`
        after each batch that deleted something; `on_oldest(age_s)` after each pass, with
        the age of the oldest finished job still stored (None: there is none)."""
        self._pool = pool
        self._retain_s = policy.by_status
        self._batch_jobs = batch_jobs
        self._batch_events = batch_events
        self._wait_for_lock = wait_for_lock
        self._on_pruned = on_pruned
        self._on_oldest = on_oldest

    @classmethod
    def from_settings(
        cls,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        wait_for_lock: bool = False,
        on_pruned: OnPruned = _ignore,
        on_oldest: OnOldest = _ignore,
    ) -> Pruner:
        """A pruner with the retentions and batch bounds of `settings`."""
        return cls(
            pool,
            Retention.from_settings(settings),
            batch_jobs=settings.prune_batch_jobs,
            batch_events=settings.prune_batch_events,
            wait_for_lock=wait_for_lock,
            on_pruned=on_pruned,
            on_oldest=on_oldest,
        )

    async def run_once(self) -> Pruned:
        """One pass: batches until one deletes nothing or another process is pruning."""
        pruned = Pruned()
        started = time.monotonic()
        while True:
            batch = await self._batch()
            if batch is None:
                break
            jobs = {status: batch[status] for status in self._retain_s if batch[status]}
            if not jobs:
                break
            pruned.jobs.update(jobs)
            pruned.events += batch["events"]
            pruned.batches += 1
            self._on_pruned(jobs, batch["events"])
        if pruned.batches:
            emptied = await retention.drop_emptied_batches(self._pool, limit=self._batch_jobs)
            log.info(
                "retention.pruned",
                jobs=dict(pruned.jobs),
                events=pruned.events,
                batches=pruned.batches,
                finished_batches_dropped=emptied,
                duration_s=round(time.monotonic() - started, 3),
            )
        self._on_oldest(await self.oldest_age_s())
        pruned.turns = await fairness.prune_turns(self._pool, idle_s=FAIR_TURN_IDLE_S)
        if pruned.turns:
            log.info("retention.turns_forgotten", turns=pruned.turns, idle_s=FAIR_TURN_IDLE_S)
        return pruned

    async def expired(self) -> list[asyncpg.Record]:
        """What a pass would delete now, per status: `jobs`, `events`, `oldest` finish."""
        return await retention.expired_by_status(self._pool, retain_s=self._retain_s)

    async def oldest_age_s(self) -> float | None:
        """Seconds since the oldest finished job still stored finished; None if none is."""
        return await retention.oldest_finished_age_s(self._pool, statuses=list(self._retain_s))

    async def _batch(self) -> asyncpg.Record | None:
        """One batch in a transaction of its own; None when another process holds the lock."""
        async with self._pool.acquire() as conn, conn.transaction():
            if self._wait_for_lock:
                await locks.wait_transaction_lock(conn, locks.RETENTION)
            elif not await locks.try_transaction_lock(conn, locks.RETENTION):
                return None
            return await retention.prune_batch(
                conn,
                retain_s=self._retain_s,
                max_jobs=self._batch_jobs,
                max_events=self._batch_events,
            )
