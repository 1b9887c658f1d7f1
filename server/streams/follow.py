"""Subscribe, then replay from Postgres, then follow live: every event once, in order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Any

import asyncpg

from tidings.core.db import events, jobs
from tidings.core.events import TERMINAL_KINDS
from tidings.core.model import TERMINAL_STATUSES
from tidings.server.streams.hub import Notice, Subscription


async def replay_then_follow(
    pool: asyncpg.Pool, subscription: Subscription, job_id: uuid.UUID, after: int
) -> AsyncGenerator[dict[str, Any] | Notice, None]:
    """Events of one job with seq > `after`, gapless and in order; ends after a terminal one.

    `subscription` (to the job's events) is taken before the history is read, so an event
    committed at any moment is either in the history or arrives live; seqs already sent
    are skipped and a hole (a lost or overflowed publish) is filled from Postgres.
    `Notice.KEEPALIVE` is passed on for the caller to send a comment; the stream ends
    when the subscription is closed.
    """
    last = after
    backlog = await _history(pool, job_id, last)
    if not backlog and await _finished_at_or_before(pool, job_id, last):
        return
    while True:
        # Popped as sent: an idle stream holds no history while it waits.
        while backlog:
            last, kind = backlog[0]["seq"], backlog[0]["kind"]
            yield backlog.pop(0)
            # Events after a terminal one mean the job was retried by hand: go on.
            if kind in TERMINAL_KINDS and not backlog:
                return
        live = await subscription.next()
        if live is Notice.CLOSED:
            return
        if live is Notice.KEEPALIVE:
            yield live
        elif live is Notice.RESYNC or live["seq"] > last + 1:
            backlog = await _history(pool, job_id, last)
        elif live["seq"] == last + 1:
            backlog = [live]


async def follow_all(subscription: Subscription) -> AsyncGenerator[dict[str, Any] | Notice, None]:
    """Every job's live events, with resync and keep-alive notices, until it is closed."""
    while (event := await subscription.next()) is not Notice.CLOSED:
        yield event


async def _history(pool: asyncpg.Pool, job_id: uuid.UUID, after: int) -> list[dict[str, Any]]:
    return await events.events_after(pool, job_id=job_id, after=after)


async def _finished_at_or_before(pool: asyncpg.Pool, job_id: uuid.UUID, seq: int) -> bool:
    row = await jobs.job_position(pool, job_id=job_id)
    return row is None or (row["status"] in TERMINAL_STATUSES and row["seq"] <= seq)
