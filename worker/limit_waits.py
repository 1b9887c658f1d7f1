"""Tokens of jobs held back by their concurrency key or rate limit, and the wake-ups that
let them go.

A token whose claim took nothing while its own job still waits comes back later. For a
job behind its key that is `KEY_TOKEN_DELAY_S`: the job that frees the slot wakes a claim
when it ends (`wake_after`), so the long delay only covers a lost wake-up. For a job
behind its rate limit it is when its bucket will hold a token for it (its place among the
key's due jobs at the bucket's rate), so a thousand waiting jobs do not try every second.
Any other waiting token keeps the runtime's one-second retry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError

from tidings.core import queue
from tidings.core.db import fairness
from tidings.core.fair_waits import rate_starts_in_s
from tidings.worker.runtime import Runtime

log = structlog.get_logger("tidings.pickup")

# How long the token of a job whose key is full sleeps, in case the wake-up from the job
# that frees the slot is lost (Redis away at that moment, a worker killed).
KEY_TOKEN_DELAY_S = 10.0
# The longest a rate-limited token sleeps before looking again (a bucket's rate may be
# raised by a newer deploy of the task meanwhile).
MAX_RATE_DELAY_S = 60.0
# The shortest, so that tokens due now do not spin on an empty bucket.
MIN_RATE_DELAY_S = 0.05


class WaitingTokens:
    """Puts back the tokens of a pass whose claims took nothing, by what their jobs wait on."""

    def __init__(self, runtime: Runtime, queue_name: str) -> None:
        self.runtime = runtime
        self.queue = queue_name

    def look_up(self, job_ids: Sequence[uuid.UUID]) -> asyncio.Future[dict[uuid.UUID, float]]:
        """Start reading, in one statement, how long each waiting job's token should sleep
        (only jobs held back by a key or a rate limit are in the answer)."""
        return asyncio.ensure_future(self._delays(job_ids))

    async def _delays(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float]:
        rows = await fairness.token_waits(self.runtime.pool, job_ids=job_ids)
        return {row["id"]: delay for row in rows if (delay := token_delay_s(row)) is not None}

    async def put_back(
        self, job_id: uuid.UUID | None, attempt: int, delays: asyncio.Future[dict[uuid.UUID, float]]
    ) -> None:
        """Re-enqueue this token after its job's wait, or as the runtime does for others."""
        if job_id is None:
            return
        delay_s = (await delays).get(job_id)
        if delay_s is None:
            await self.runtime.keep_token_alive(self.queue, job_id, attempt)
            return
        arq_id = f"{queue.arq_job_id(job_id, attempt)}:{uuid.uuid4().hex[:8]}"
        due = datetime.now(UTC) + timedelta(seconds=delay_s)
        log.debug("token.held_by_limit", job_id=str(job_id), attempt=attempt, delay_s=delay_s)
        await self._enqueue(queue.Token(job_id, attempt, self.queue, due, arq_id))

    async def wake_after(self, row: asyncpg.Record) -> None:
        """A job with a concurrency key ended: one of its slots is free, claim again."""
        if row["job_concurrency_key"] is not None:
            await self._enqueue(queue.Token(None, 0, self.queue))

    async def _enqueue(self, token: queue.Token) -> None:
        try:
            await queue.enqueue_fresh(self.runtime.redis, self.runtime.names, [token])
        except (RedisError, OSError) as exc:
            # The job waits in Postgres; the reconciler gives it a token again.
            log.warning("token.enqueue_failed", job_id=str(token.job_id), error=repr(exc))


def token_delay_s(row: asyncpg.Record | Mapping[str, Any]) -> float | None:
    """How long a waiting job's token sleeps: None when no key or rate limit holds it."""
    run_at: datetime = row["run_at"]
    starts_in_s = max(0.0, (run_at - datetime.now(UTC)).total_seconds())
    if row["key_full"]:
        return max(starts_in_s, KEY_TOKEN_DELAY_S)
    if row["rate_per_s"] is not None:
        per_s: float = row["rate_per_s"]
        wait_s = rate_starts_in_s(row["rate_ahead"], row["tokens"], per_s)
        if wait_s > 0:  # else something other than its bucket holds it
            return max(starts_in_s, min(MAX_RATE_DELAY_S, max(MIN_RATE_DELAY_S, wait_s)))
    return None
