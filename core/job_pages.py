"""Pages of the job list, newest first: cursors both ways, a jump to the oldest page, and
where a page sits in the whole list.

A cursor is opaque to callers: the (created_at, id) of the row a page stops at, and which
way to read from it. Cursors issued before newer-than cursors existed read older jobs, and
still do. A page's position is counted, never estimated, up to `COUNT_CAP` jobs; past it
the answer says so ("100,000+") instead of scanning a long history.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg

from tidings.core.db import search
from tidings.core.db.pool import Db
from tidings.core.errors import Unprocessable

# Counting stops here: over a million jobs, counting this far reads at most this many
# entries of an index (docs/performance.md, "Finding jobs").
COUNT_CAP = 100_000
# A count that takes longer is given up (a status with a rare name can make Postgres read
# many more jobs than match): the position then says less, never slows the page.
COUNT_WITHIN_MS = 250
_NEWER = "newer"

Key = tuple[datetime, uuid.UUID]


class Direction(StrEnum):
    OLDER = "older"
    NEWER = "newer"


@dataclass(frozen=True)
class Cursor:
    """Read the jobs strictly older (or newer) than the one at `key`."""

    direction: Direction
    key: Key


def encode_cursor(direction: Direction, row: asyncpg.Record) -> str:
    """The cursor that reads on from `row` in `direction`."""
    text = f"{row['created_at'].isoformat()}|{row['id']}"
    if direction is Direction.NEWER:
        text = f"{_NEWER}|{text}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    """A cursor this server issued, or 422."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = text.split("|")
        direction = Direction.OLDER
        if len(parts) == 3 and parts[0] == _NEWER:
            direction = Direction.NEWER
            parts = parts[1:]
        created, job_id = parts
        key = (datetime.fromisoformat(created).astimezone(UTC), uuid.UUID(job_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable(
            "cursor is not one this server issued",
            {"field": "cursor", "reason": "unreadable"},
            code="invalid_query",
        ) from None
    return Cursor(direction, key)


@dataclass(frozen=True)
class Position:
    """Where a page sits: rows `first`…`last` (1-based) of `total`. `total_exact` is False
    when the count stopped at `cap`; `total` is None when counting took too long; `first`
    and `last` are None when more than `cap` newer jobs precede the page (or counting them
    took too long)."""

    first: int | None
    last: int | None
    total: int | None
    total_exact: bool
    cap: int


@dataclass(frozen=True)
class Page:
    """Up to `limit` jobs newest first, and the cursors to the pages either side."""

    rows: list[asyncpg.Record]
    older: str | None
    newer: str | None


def _key(row: asyncpg.Record) -> Key:
    return row["created_at"], row["id"]


async def read_page(
    db: Db,
    *,
    tenant: str,
    resolved: search.Resolved,
    limit: int,
    cursor: Cursor | None = None,
    oldest: bool = False,
) -> Page:
    """The newest page, the page `cursor` names, or (`oldest`) the page of the oldest jobs."""
    if oldest or (cursor is not None and cursor.direction is Direction.NEWER):
        after = cursor.key if cursor is not None else None
        rows = await search.list_matching(
            db, tenant=tenant, resolved=resolved, newest_first=False, beyond=after, limit=limit + 1
        )
        page = rows[:limit][::-1]
        more_newer = len(rows) > limit
        # Reading newer from a cursor, the job the cursor stands on is older than the page.
        more_older = cursor is not None
    else:
        before = cursor.key if cursor is not None else None
        rows = await search.list_matching(
            db, tenant=tenant, resolved=resolved, beyond=before, limit=limit + 1
        )
        page = rows[:limit]
        more_older = len(rows) > limit
        more_newer = cursor is not None
    return Page(
        rows=page,
        older=encode_cursor(Direction.OLDER, page[-1]) if page and more_older else None,
        newer=encode_cursor(Direction.NEWER, page[0]) if page and more_newer else None,
    )


async def position_of(
    pool: asyncpg.Pool, *, tenant: str, resolved: search.Resolved, page: Page
) -> Position:
    """Where `page` sits among the jobs the filter matches, counted up to `COUNT_CAP`
    within `COUNT_WITHIN_MS` per count (past that, the count is unknown: None)."""
    async with pool.acquire() as conn:
        total = await search.count_up_to(
            conn, tenant=tenant, resolved=resolved, cap=COUNT_CAP, within_ms=COUNT_WITHIN_MS
        )
        total_exact = total is not None and total < COUNT_CAP
        if not page.rows:
            return Position(None, None, total, total_exact, COUNT_CAP)
        ahead: int | None = 0
        if page.newer is not None:
            ahead = await search.count_up_to(
                conn,
                tenant=tenant,
                resolved=resolved,
                cap=COUNT_CAP,
                within_ms=COUNT_WITHIN_MS,
                newer_than=_key(page.rows[0]),
            )
    if ahead is None or ahead >= COUNT_CAP:
        return Position(None, None, total, total_exact, COUNT_CAP)
    return Position(ahead + 1, ahead + len(page.rows), total, total_exact, COUNT_CAP)
