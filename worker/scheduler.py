"""Cron: each slot of each cron task becomes one ordinary job, once across all workers.

Every worker runs a scheduler; they all try to create the job of a slot, and the unique
`schedule_key` in Postgres lets exactly one of them succeed. Slots missed while no worker
ran are not replayed, unless the task asks for the latest one with `cron_catch_up`; a slot
whose job cannot be created (Postgres away) is tried again until the next slot is due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog
from croniter import croniter

from tidings.core.service import Service
from tidings.core.submission import JobRequest, Submitter
from tidings.worker.registry import TaskSpec

log = structlog.get_logger("tidings.cron")

# Backoff between attempts at a slot whose job could not be created.
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def schedule_key(spec: TaskSpec, slot: datetime) -> str:
    """The key that makes a slot's job unique across workers."""
    return f"cron:{spec.name}@{slot.astimezone(UTC).isoformat()}"


class CronScheduler:
    """Creates the job of every cron slot as it comes due."""

    def __init__(
        self,
        submitter: Submitter,
        specs: Sequence[TaskSpec],
        *,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._submitter = submitter
        self._specs = [spec for spec in specs if spec.cron is not None]
        self._clock = clock
        self._sleep = sleep
        self._started_at: datetime | None = None  # where the first run follows on from
        self._service = Service("tidings-cron", self._follow)

    async def start(self) -> None:
        """Catch up where asked, then follow the schedule in the background."""
        if not self._specs:
            return
        self._started_at = now = self._clock()
        for spec in self._specs:
            if spec.cron_catch_up:
                await self.fire(spec, croniter(spec.cron, now).get_prev(datetime))
        self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    async def _follow(self) -> None:
        # A restart after a crash follows on from now: slots it missed meanwhile were not
        # this start's to catch up, and walking every slot since the first start could
        # take hours.
        start = self._started_at or self._clock()
        self._started_at = None
        await self.run(start)

    async def run(self, start: datetime) -> None:
        """Fire each slot after `start` when the clock reaches it, forever.

        Each task keeps its own schedule. A slot whose job could not be created (Postgres
        away) is tried again with backoff until it is, or until the task's next slot is
        due: then it is given up, loudly, and only that next slot is tried.
        """
        upcoming = {
            spec.name: croniter(spec.cron, start).get_next(datetime) for spec in self._specs
        }
        retry_s = FIRST_RETRY_S
        while True:
            failing = [s.name for s in self._specs if not await self._fire_due(s, upcoming)]
            now = self._clock()
            waits = [
                max(0.0, (slot - now).total_seconds())
                for name, slot in upcoming.items()
                if name not in failing
            ]
            if failing:
                waits.append(retry_s)
                retry_s = min(retry_s * 2, MAX_RETRY_S)
            else:
                retry_s = FIRST_RETRY_S
            await self._sleep(min(waits))

    async def _fire_due(self, spec: TaskSpec, upcoming: dict[str, datetime]) -> bool:
        """Fire `spec`'s due slots in order; False if the earliest must be tried again."""
        while (slot := upcoming[spec.name]) <= self._clock():
            following = croniter(spec.cron, slot).get_next(datetime)
            if await self.fire(spec, slot) is None:
                if following > self._clock():
                    return False
                log.error("cron.slot_missed", task=spec.name, slot=slot.isoformat())
            upcoming[spec.name] = following
        return True

    async def fire(self, spec: TaskSpec, slot: datetime) -> bool | None:
        """Create the job of `slot`: True if this scheduler did, False if another worker
        already had, None if it could not be created now."""
        request = JobRequest(
            task=spec.name,
            args={},
            queue=spec.queue,
            max_attempts=spec.max_attempts,
            timeout_s=spec.timeout_s,
            run_at=slot,
            schedule_key=schedule_key(spec, slot),
        )
        try:
            submitted = await self._submitter.submit(request)
        except Exception as exc:  # a failed slot must not stop the schedule
            log.warning("cron.fire_failed", task=spec.name, slot=slot.isoformat(), error=repr(exc))
            return None
        created = submitted is not None
        if created:
            log.info("cron.fired", task=spec.name, slot=slot.isoformat())
        return created
