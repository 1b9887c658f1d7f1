"""The caller's job named by a path id: malformed, unknown and foreign ids are all a 404.

A job can also be found by the first hex digits of its id, as the dashboard shows them.
"""

from __future__ import annotations

import uuid

import asyncpg

from tidings.core.db import jobs
from tidings.core.db.pool import Db
from tidings.core.errors import NotFound, Unprocessable

# Shorter prefixes match too many jobs to be worth a lookup: 6 hex digits tell 16 million
# ids apart.
MIN_PREFIX_DIGITS = 6
HEX_DIGITS = frozenset("0123456789abcdef")


def id_prefix_range(raw: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The lowest and highest ids that start with `raw` (hex digits; dashes are ignored).

    Postgres orders uuids byte by byte, as their hex text reads, so the ids with a prefix
    are one range of the primary key's index: no index on the id's text is needed.
    """
    digits = raw.replace("-", "").lower()
    if not (MIN_PREFIX_DIGITS <= len(digits) <= 32 and set(digits) <= HEX_DIGITS):
        raise Unprocessable(
            f"an id prefix is {MIN_PREFIX_DIGITS} to 32 hex digits",
            {"field": "id_prefix", "reason": f"got {raw!r}"},
            code="invalid_query",
        )
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


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
