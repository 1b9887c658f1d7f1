"""The caller's job named by a path id: malformed, unknown and foreign ids are all a 404."""

from __future__ import annotations

import uuid

import asyncpg

from tidings.core.db import jobs
from tidings.core.db.pool import Db
from tidings.core.errors import NotFound


def parse_job_id(raw: str) -> uuid.UUID:
    """A job id from a path; anything that is not a UUID names no job (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no job with id {raw!r}") from None


async def load_job(db: Db, raw_id: str, tenant: str) -> asyncpg.Record:
    """The caller's job for an id, or 404 (another tenant's job is a 404 too)."""
    row = await jobs.get_job(db, job_id=parse_job_id(raw_id), tenant=tenant)
    if row is None:
        raise NotFound(f"no job with id {raw_id!r}")
    return row
