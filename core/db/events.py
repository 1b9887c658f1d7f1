"""Named statements on `job_events`: the per-job history that streams replay from."""

from __future__ import annotations

import uuid

import asyncpg

EVENTS_AFTER = """
SELECT * FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq
"""


async def events_after(
    conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, after: int
) -> list[asyncpg.Record]:
    """Every event of `job_id` with seq greater than `after`, in order."""
    return list(await conn.fetch(EVENTS_AFTER, job_id, after))
