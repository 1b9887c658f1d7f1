"""Statements on `job_events`: the per-job history that streams replay from."""

from __future__ import annotations

import uuid

import asyncpg

from tidings.core.db.pool import Db

_EVENTS_AFTER = """
SELECT e.*, j.task AS job_task, j.queue AS job_queue, j.tenant AS job_tenant
FROM job_events e JOIN jobs j ON j.id = e.job_id
WHERE e.job_id = $1 AND e.seq > $2
ORDER BY e.seq
"""


async def events_after(db: Db, *, job_id: uuid.UUID, after: int) -> list[asyncpg.Record]:
    """Every event of `job_id` with seq greater than `after`, in order."""
    return list(await db.fetch(_EVENTS_AFTER, job_id, after))
