"""Subscribe, then replay from Postgres, then follow live: every event once, in order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from core.db import events, jobs
from core.model import TERMINAL_KINDS, TERMINAL_STATUSES, event_json
from server.hub import Hub


async def replay_then_follow(
    pool: asyncpg.Pool, hub: Hub, job_id: uuid.UUID, after: int
) -> AsyncIterator[dict[str, Any]]:
    """Events of one job with seq > `after`, gapless and in order; ends after a terminal one.

    The subscription starts before the history is read, so an event committed at any
    moment is either in the history or arrives live; seqs already sent are skipped and
    a hole (a lost or overflowed publish) is filled from Postgres.
    """
    with hub.subscribe(str(job_id)) as subscription:
        last = after
        backlog = await _history(pool, job_id, last)
        if not backlog and await _finished_at_or_before(pool, job_id, last):
            return
        while True:
            for index, event in enumerate(backlog):
                yield event
                last = event["seq"]
                # Events after a terminal one mean the job was retried by hand: go on.
                if event["kind"] in TERMINAL_KINDS and index == len(backlog) - 1:
                    return
            live = await subscription.next()
            if live is None or live["seq"] > last + 1:
                backlog = await _history(pool, job_id, last)
            elif live["seq"] == last + 1:
                backlog = [live]
            else:
                backlog = []


async def _history(pool: asyncpg.Pool, job_id: uuid.UUID, after: int) -> list[dict[str, Any]]:
    return [event_json(row) for row in await events.events_after(pool, job_id, after)]


async def _finished_at_or_before(pool: asyncpg.Pool, job_id: uuid.UUID, seq: int) -> bool:
    row = await pool.fetchrow(jobs.JOB_POSITION, job_id)
    return row is None or (row["status"] in TERMINAL_STATUSES and row["seq"] <= seq)
