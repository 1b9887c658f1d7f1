"""Push pickup: an ARQ consumer that sleeps until work arrives and takes tokens in batches.

ARQ's loop polls the queue every `poll_delay` and starts each job with four round trips
(WATCH, EXISTS, ZSCORE, then MULTI/PSETEX/EXEC), reads it with a fifth and cleans up
with a sixth. This subclass keeps ARQ's queue format and keys but replaces that loop:
one script per pass removes the tokens of finished jobs, takes every due token it has
room for (marking each in progress, as ARQ does) and says when the next deferred one is
due; the jobs behind the taken tokens are claimed in Postgres in one statement. Between
passes it waits for a wake-up (a token due now was enqueued, or one of its jobs ended)
or for the next deferred token, with a slow fallback poll in case a wake-up was lost;
a fallback that finds no token also claims due jobs straight from Postgres, so a job
whose token was lost starts within `poll_delay_s` on an idle worker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import DeserializationError
from arq.utils import timestamp_ms
from arq.worker import func

from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.queue import RUN_FUNCTION
from tidings.worker.arq_adapter import ArqConsumer, read_token
from tidings.worker.limit_waits import WaitingTokens
from tidings.worker.runtime import Runtime

log = structlog.get_logger("tidings.pickup")

# What makes a claim fail without a bug: Postgres away, or refusing (a timeout, a conflict).
CLAIM_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)
# How long a pass waits before trying again after Postgres refused a claim.
CLAIM_RETRY_S = 1.0
# How long a job must have been due before an idle worker claims it without its token:
# long enough that the token of a job submitted a moment ago gets there first.
UNTOKENED_AFTER_S = 0.5
# How long a taken token stays marked in progress. ARQ would use the function timeout plus
# 10 s (a day, as tidings sets it); the claim in Postgres is the real fence, so a token
# whose clean-up was lost (a Redis blip, a killed worker) is free again within a minute,
# and one taken again while its job still runs only makes another worker look for work.
TOKEN_LEASE_S = 60

# KEYS[1]: the queue. ARGV: now (ms), in-progress TTL (ms), free slots, read limit, the
# job / in-progress / retry key prefixes, the number of finished tokens, then their ids.
# Returns the next deferred token's due time ('' if none) and [id, payload, id, …] taken.
TAKE_TOKENS = """
local queue = KEYS[1]
local now, ttl = tonumber(ARGV[1]), ARGV[2]
local free, read_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local job_prefix, progress_prefix, retry_prefix = ARGV[5], ARGV[6], ARGV[7]
local finished = tonumber(ARGV[8])
for i = 9, 8 + finished do
    local id = ARGV[i]
    redis.call('del', progress_prefix .. id, job_prefix .. id, retry_prefix .. id)
    redis.call('zrem', queue, id)
end
local taken = {}
if free > 0 then
    local due = redis.call('zrangebyscore', queue, '-inf', now, 'LIMIT', 0, read_limit)
    for _, id in ipairs(due) do
        if redis.call('exists', progress_prefix .. id) == 0 then
            local payload = redis.call('get', job_prefix .. id)
            if payload then
                redis.call('psetex', progress_prefix .. id, ttl, '1')
                taken[#taken + 1] = id
                taken[#taken + 1] = payload
                if #taken >= 2 * free then break end
            else
                redis.call('zrem', queue, id)  -- its payload expired: ARQ drops it too
            end
        end
    end
end
local upcoming = redis.call('zrangebyscore', queue, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {upcoming[2] or '', taken}
"""


@dataclass(frozen=True)
class Delivery:
    """A token taken from the queue: its ARQ id and the job and attempt it names."""

    arq_id: str
    job_id: uuid.UUID | None
    attempt: int


def pair(
    deliveries: list[Delivery], rows: list[asyncpg.Record]
) -> list[tuple[Delivery, asyncpg.Record | None]]:
    """Each claimed row with a token: its own job's token where one was taken, else a token
    naming no job, so that the tokens left over (to check whether their job still waits)
    are those of jobs not claimed here."""
    by_job = {delivery.job_id: delivery for delivery in deliveries if delivery.job_id}
    paired: list[tuple[Delivery, asyncpg.Record | None]] = []
    others: list[asyncpg.Record] = []
    for row in rows:
        own = by_job.pop(row["id"], None)
        if own is None:
            others.append(row)
        else:
            paired.append((own, row))
    taken = {id(delivery) for delivery, _ in paired}
    spare = [delivery for delivery in deliveries if id(delivery) not in taken]
    spare.sort(key=lambda delivery: delivery.job_id is not None)  # jobless tokens go first
    paired += list(zip(spare, others, strict=False))
    paired += [(delivery, None) for delivery in spare[len(others) :]]
    return paired


async def taken_by_passes(ctx: dict[str, Any], *args: Any) -> None:
    """The function ARQ knows tokens by. ARQ's own loop, the only caller, never runs here:
    `PushWorker`'s passes take every token and the runtime runs its job."""
    raise RuntimeError("tidings tokens are taken by PushWorker, not run by ARQ's loop")


class PushWorker(ArqConsumer):
    """An ARQ worker whose poll loop is driven by wake-ups, with `fallback_s` as a floor."""

    def __init__(self, *, fallback_s: float, runtime: Runtime, queue: str, **kwargs: Any) -> None:
        super().__init__([func(taken_by_passes, name=RUN_FUNCTION)], **kwargs)
        self.fallback_s = fallback_s
        self.runtime = runtime
        self.queue = queue
        self.waiting_tokens = WaitingTokens(runtime, queue)
        self.woken = asyncio.Event()
        self._finished: list[str] = []
        self._take: Any = None

    def wake(self) -> None:
        """Poll now."""
        self.woken.set()

    async def main(self) -> None:
        self._take = (await self.connect()).register_script(TAKE_TOKENS)
        while True:
            self.woken.clear()
            started, wait_s = await self._pass()
            if started:
                continue  # it took all it had room for, or all that was due: look again
            try:
                async with asyncio.timeout(wait_s):
                    await self.woken.wait()
            except TimeoutError:
                await self._claim_without_tokens()

    async def close(self) -> None:
        """Stop what still runs, remove the tokens of jobs that ended, then close."""
        await self.cancel_running_tasks()
        if self._finished and self._take is not None:
            finished, self._finished = self._finished, []
            await self._take_tokens(finished, free=0)
        await super().close()

    async def _pass(self) -> tuple[int, float]:
        """Take and start what is due; returns how many started and how long to wait."""
        finished, self._finished = self._finished, []
        free = self.free_slots
        try:
            deliveries, next_due_ms = await self._take_tokens(finished, free)
        except BaseException:
            self._finished[:0] = finished  # removed by the next pass that gets through
            raise
        started = await self._start(deliveries) if deliveries else 0
        self.forget_finished_tasks()
        await self.write_health_key()
        if next_due_ms is None:
            return started, self.fallback_s
        return started, max(0.0, min(self.fallback_s, (next_due_ms - timestamp_ms()) / 1000))

    async def _take_tokens(
        self, finished: list[str], free: int
    ) -> tuple[list[Delivery], float | None]:
        now = timestamp_ms()
        next_due, taken = await self._take(
            keys=[self.queue_name],
            args=[
                now,
                TOKEN_LEASE_S * 1000,
                free,
                self.queue_read_limit,
                job_key_prefix,
                in_progress_key_prefix,
                retry_key_prefix,
                len(finished),
                *finished,
            ],
        )
        deliveries = []
        for arq_id, payload in zip(taken[::2], taken[1::2], strict=True):
            if self.running(arq_id.decode()):
                continue  # its lease ran out while its job runs here: renewed, nothing to do
            delivery = self._delivery(arq_id.decode(), payload)
            if delivery is None:
                self._finished.append(arq_id.decode())  # removed with the next pass
            else:
                deliveries.append(delivery)
        return deliveries, float(next_due) if next_due else None

    def _delivery(self, arq_id: str, payload: bytes) -> Delivery | None:
        try:
            job_id, attempt = read_token(payload, self.job_deserializer)
            return Delivery(arq_id, uuid.UUID(job_id) if job_id else None, int(attempt))
        except (DeserializationError, ValueError, TypeError) as exc:
            # Not a token tidings wrote; ARQ itself would fail and drop it too.
            log.warning("token.unreadable", token=arq_id, error=repr(exc))
            return None

    async def _start(self, deliveries: list[Delivery]) -> int:
        """Claim jobs for the taken tokens in one statement and run each in its own task."""
        try:
            rows = await self.runtime.claim(self.queue, len(deliveries))
        except CLAIM_ERRORS as exc:
            # Postgres is away or refused: put the tokens back as they were, try again soon.
            log.warning("claim.failed", queue=self.queue, error=repr(exc), tokens=len(deliveries))
            try:
                redis = await self.connect()
                await redis.delete(*(in_progress_key_prefix + d.arq_id for d in deliveries))
            finally:
                await asyncio.sleep(CLAIM_RETRY_S)
            return 0
        paired = pair(deliveries, rows)
        # More tokens than claimable jobs: a token's own job may still wait, perhaps on its
        # concurrency key or rate limit. One statement says what each waits on.
        spare = [d.job_id for d, row in paired if row is None and d.job_id is not None]
        delays = self.waiting_tokens.look_up(spare) if spare else None
        for delivery, row in paired:
            if row is not None:
                work = self._run_claimed(row)
            elif delays is not None:
                work = self.waiting_tokens.put_back(delivery.job_id, delivery.attempt, delays)
            else:
                work = self.runtime.keep_token_alive(self.queue, delivery.job_id, delivery.attempt)
            self._run(delivery.arq_id, work)
        return len(deliveries)

    async def _run_claimed(self, row: asyncpg.Record) -> None:
        """Run a claimed job; when it held a slot of a concurrency key, claim again."""
        await self.runtime.run_claimed(row)
        await self.waiting_tokens.wake_after(row)

    async def _claim_without_tokens(self) -> int:
        """Nothing woke this idle worker for a while: claim due jobs straight from Postgres.

        A job whose token never reached Redis (its server died between commit and enqueue,
        Redis lost it) would otherwise wait for the reconciler; the claim is the fence
        either way, and a token that turns up later for a job claimed here finds it
        running and is dropped.
        """
        free = self.free_slots
        if free <= 0:
            return 0
        try:
            rows = await self.runtime.claim(self.queue, free, due_for_s=UNTOKENED_AFTER_S)
        except CLAIM_ERRORS as exc:
            log.warning("claim.failed", queue=self.queue, error=repr(exc), tokens=0)
            return 0
        for row in rows:
            log.info("job.claimed_without_token", job_id=str(row["id"]), queue=self.queue)
            self._run(f"untokened:{row['id']}:{row['attempt']}", self._run_claimed(row))
        return len(rows)

    def _run(self, arq_id: str, work: Coroutine[Any, Any, None]) -> None:
        self.start_task(arq_id, self._guarded(arq_id, work))

    async def _guarded(self, arq_id: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except CONNECTION_ERRORS as exc:
            # Only a token's own bookkeeping reads Postgres outside the reporter; its job
            # still waits there, and the reconciler gives it a token again.
            log.warning("token.dropped", token=arq_id, error=repr(exc))
        except Exception:
            # The runtime records every outcome itself and the reporter retries through
            # outages, so this is a bug: say so loudly, and still free the slot.
            log.exception("token.failed", token=arq_id)
        finally:
            self._finished.append(arq_id)
            self.finish_task()
            self.woken.set()  # a slot is free and a token is to be removed: pass again
