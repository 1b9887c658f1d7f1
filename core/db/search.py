"""Statements that find a tenant's jobs by a `JobFilter`: pages of the list, bounded counts,
and the failed jobs a bulk retry takes.

Every condition is one an index answers (docs/decisions.md, "Finding jobs, acting on
many, trends"): names and prefixes read `jobs_task_search` / `jobs_queue_search` (byte
order, so a prefix is one range); a substring is first turned into the tenant's names
that contain it, read from the same index by a skip scan, then matched as names; ids read
the primary key, times the listing index. Values are always bound as parameters; only the
shape of the WHERE clause varies.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from tidings.core.db.pool import Connection, Db
from tidings.core.job_filter import JobFilter


@dataclass
class Where:
    """A WHERE clause being built: its conditions and their parameters, `$n` in order."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, condition: str, *values: Any) -> None:
        """Append `condition`, whose `{}` placeholders take the next `$n`, one per value."""
        places = [f"${len(self.params) + n}" for n in range(1, len(values) + 1)]
        self.params.extend(values)
        self.clauses.append(condition.format(*places))

    def sql(self) -> str:
        return " AND ".join(self.clauses) or "true"

    def next_place(self, value: Any) -> str:
        """A `$n` for one more parameter (a LIMIT, say), not a condition."""
        self.params.append(value)
        return f"${len(self.params)}"


def _after_prefix(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` in byte (code point)
    order, or None when there is none (the prefix is all U+10FFFF)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are no characters of UTF-8 text
            code = 0xE000
        if code <= sys.maxunicode:
            return "".join(chars) + chr(code)
    return None


def _like_substring(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# The tenant's distinct names of a column, in byte order, by a skip scan of its search
# index: each step is one probe for the next name, so the cost is one probe per distinct
# name however many jobs share them; at most $2 names are read.
_DISTINCT_NAMES = """
WITH RECURSIVE names (name, n) AS (
    (SELECT {column}, 1 FROM jobs WHERE tenant = $1 ORDER BY {column} USING ~<~ LIMIT 1)
    UNION ALL
    SELECT (SELECT {column} FROM jobs
             WHERE tenant = $1 AND {column} ~>~ names.name
             ORDER BY {column} USING ~<~ LIMIT 1), n + 1
      FROM names WHERE names.name IS NOT NULL AND n < $2
)
SELECT name, n FROM names WHERE name IS NOT NULL
"""
# Distinct names read per substring filter at most. A tenant with more names than this
# (names are few: a task registry, a handful of queues) gets a scan instead.
MAX_NAMES = 1000


async def names_containing(
    db: Db, *, tenant: str, column: str, text: str, cap: int = MAX_NAMES
) -> list[str] | None:
    """The tenant's distinct `column` values (task or queue) that contain `text`; None
    when the tenant has more than `cap` of them and they were not all read."""
    assert column in ("task", "queue")
    rows = await db.fetch(_DISTINCT_NAMES.format(column=column), tenant, cap + 1)
    if len(rows) > cap:
        return None
    return [row["name"] for row in rows if text in row["name"]]


@dataclass(frozen=True)
class Resolved:
    """A filter whose substrings were looked up: the names of each column that contain it
    (None: not looked up, match with LIKE)."""

    job_filter: JobFilter
    tasks: list[str] | None = None
    queues: list[str] | None = None


async def resolve(db: Db, *, tenant: str, job_filter: JobFilter) -> Resolved:
    """`job_filter` with its substrings turned into the names that contain them."""
    tasks = queues = None
    if job_filter.task_contains is not None:
        tasks = await names_containing(
            db, tenant=tenant, column="task", text=job_filter.task_contains
        )
    if job_filter.queue_contains is not None:
        queues = await names_containing(
            db, tenant=tenant, column="queue", text=job_filter.queue_contains
        )
    return Resolved(job_filter, tasks, queues)


def _name_conditions(
    where: Where,
    column: str,
    exact: str | None,
    prefix: str | None,
    contains: str | None,
    names: list[str] | None,
) -> None:
    if exact is not None:
        where.add(f"{column} = {{}}", exact)
    if prefix is not None:
        # The operators of `text_pattern_ops`: a range of the index even in a generic plan,
        # which `LIKE 'abc%'` is not (it becomes a range only for a known constant).
        where.add(f"{column} ~>=~ {{}}", prefix)
        upper = _after_prefix(prefix)
        if upper is not None:
            where.add(f"{column} ~<~ {{}}", upper)
    if names is not None:
        where.add(f"{column} = ANY({{}}::text[])", names)
    elif contains is not None:
        where.add(f"{column} LIKE {{}}", _like_substring(contains))


def where_of(tenant: str, resolved: Resolved) -> Where:
    """The WHERE clause of the tenant's jobs that pass the resolved filter."""
    job_filter = resolved.job_filter
    where = Where()
    where.add("tenant = {}", tenant)
    if job_filter.status is not None:
        where.add("status = {}", job_filter.status)
    _name_conditions(
        where,
        "task",
        job_filter.task,
        job_filter.task_prefix,
        job_filter.task_contains,
        resolved.tasks,
    )
    _name_conditions(
        where,
        "queue",
        job_filter.queue,
        job_filter.queue_prefix,
        job_filter.queue_contains,
        resolved.queues,
    )
    if job_filter.id_between is not None:
        where.add("id BETWEEN {} AND {}", *job_filter.id_between)
    if job_filter.created_after is not None:
        where.add("created_at >= {}", job_filter.created_after)
    if job_filter.created_before is not None:
        where.add("created_at < {}", job_filter.created_before)
    if job_filter.batch_id is not None:
        where.add("batch_id = {}", job_filter.batch_id)
    if job_filter.parent_id is not None:
        where.add("parent_id = {}", job_filter.parent_id)
    return where


async def list_matching(
    db: Db,
    *,
    tenant: str,
    resolved: Resolved,
    limit: int,
    newest_first: bool = True,
    beyond: tuple[datetime, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """Matching jobs newest first (or oldest first), strictly past `beyond` (created_at,
    id) in that order if given."""
    where = where_of(tenant, resolved)
    past, order = ("<", "created_at DESC, id DESC") if newest_first else (">", "created_at, id")
    if beyond is not None:
        where.add(f"(created_at, id) {past} ({{}}, {{}})", *beyond)
    sql = f"SELECT * FROM jobs WHERE {where.sql()} ORDER BY {order} LIMIT {where.next_place(limit)}"
    return list(await db.fetch(sql, *where.params))


async def count_up_to(
    conn: Connection,
    *,
    tenant: str,
    resolved: Resolved,
    cap: int,
    within_ms: int,
    newer_than: tuple[datetime, uuid.UUID] | None = None,
) -> int | None:
    """How many jobs match (those newer than `newer_than`, if given), counting no further
    than `cap`, or None when counting took longer than `within_ms`.

    The cap bounds the jobs that match; a condition no index answers with the rest (a
    status with a rare name, say) can still make Postgres read many more, so the time is
    bounded too: on `conn`, in a transaction of its own, with a statement timeout.
    """
    where = where_of(tenant, resolved)
    if newer_than is not None:
        where.add("(created_at, id) > ({}, {})", *newer_than)
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {where.sql()} "
        f"LIMIT {where.next_place(cap)}) AS capped"
    )
    try:
        async with conn.transaction():
            # SET LOCAL takes no parameters; the value is an int, never caller text.
            await conn.execute(f"SET LOCAL statement_timeout = {int(within_ms)}")
            count: int = await conn.fetchval(sql, *where.params)
    except asyncpg.QueryCanceledError:
        return None
    return count


async def failed_ids(
    db: Db,
    *,
    tenant: str,
    resolved: Resolved,
    finished_before: datetime | None,
    limit: int,
) -> list[uuid.UUID]:
    """Ids of the tenant's failed jobs that pass `job_filter` (and failed before
    `finished_before`, if given), oldest first, at most `limit`."""
    where = where_of(tenant, resolved)
    where.add("status = {}", "failed")
    if finished_before is not None:
        where.add("finished_at < {}", finished_before)
    sql = (
        f"SELECT id FROM jobs WHERE {where.sql()} "
        f"ORDER BY created_at, id LIMIT {where.next_place(limit)}"
    )
    return [row["id"] for row in await db.fetch(sql, *where.params)]


async def statuses_of(db: Db, *, tenant: str, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of the tenant's jobs among `job_ids` (another tenant's are absent)."""
    rows = await db.fetch(
        "SELECT id, status FROM jobs WHERE tenant = $1 AND id = ANY($2::uuid[])", tenant, job_ids
    )
    return {row["id"]: row["status"] for row in rows}
