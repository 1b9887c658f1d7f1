"""Statements on `batches` and their event log (migration 0008).

A batch's counts and its gapless log are kept by a trigger on its members' transitions;
these statements create, read, page and act on batches.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from tidings.core.db.pool import Connection, Db

# The batch with the summed progress fractions of its running members (their own progress
# only; a member without a total counts 0 until it ends).
_BATCH_COLUMNS = """
b.*, (SELECT coalesce(sum(LEAST(1, GREATEST(0, j.progress_current / j.progress_total))), 0)
        FROM jobs j
       WHERE j.batch_id = b.id AND j.status = 'running' AND j.progress_total > 0)
     AS running_fraction
"""

_CREATE = """
INSERT INTO batches (id, tenant, name, metadata) VALUES ($1, $2, $3, $4::text::jsonb)
"""
_SEAL = "SELECT seal_batch($1)"
_GET = f"SELECT {_BATCH_COLUMNS} FROM batches b WHERE b.id = $1 AND b.tenant = $2"
_PAGE = f"""
SELECT {_BATCH_COLUMNS} FROM batches b
 WHERE b.tenant = $1 AND ($2::timestamptz IS NULL OR (b.created_at, b.id) < ($2, $3))
 ORDER BY b.created_at DESC, b.id DESC
 LIMIT $4
"""
_EVENTS_AFTER = """
SELECT * FROM batch_events WHERE batch_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""
_FAILED_MEMBERS = """
SELECT id, error ->> 'type' = 'DependencyFailed' AS by_dependency FROM jobs
 WHERE batch_id = $1 AND tenant = $2 AND status = 'failed'
 ORDER BY created_at, id
"""


async def create(
    conn: Connection,
    *,
    batch_id: uuid.UUID,
    tenant: str,
    name: str | None,
    metadata_json: str | None,
) -> None:
    """A new, unsealed batch (its members are added in the same transaction)."""
    await conn.execute(_CREATE, batch_id, tenant, name, metadata_json)


async def seal(conn: Connection, *, batch_id: uuid.UUID) -> None:
    """Every member is written: the batch may finish (at once, if all were born ended)."""
    await conn.execute(_SEAL, batch_id)


async def get(db: Db, *, batch_id: uuid.UUID, tenant: str) -> asyncpg.Record | None:
    """The tenant's batch with its running members' progress, or None."""
    return await db.fetchrow(_GET, batch_id, tenant)


async def page(
    db: Db, *, tenant: str, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """The tenant's batches newest first, strictly after the `before` cursor."""
    created, batch_id = before if before is not None else (None, None)
    return list(await db.fetch(_PAGE, tenant, created, batch_id, limit))


async def events_after(db: Db, *, batch_id: uuid.UUID, after: int, limit: int) -> list[Any]:
    """Up to `limit` entries of the batch's log after seq `after`, in order."""
    return list(await db.fetch(_EVENTS_AFTER, batch_id, after, limit))


async def failed_members(db: Db, *, batch_id: uuid.UUID, tenant: str) -> list[asyncpg.Record]:
    """The failed members, oldest first, and whether each failed by a dependency."""
    return list(await db.fetch(_FAILED_MEMBERS, batch_id, tenant))
