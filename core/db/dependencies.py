"""What a running job reads of the jobs it depends on and of the children it spawned."""

from __future__ import annotations

import uuid

import asyncpg

from tidings.core.db.pool import Db

_DEPENDENCIES = """
SELECT dep.id, dep.task, dep.status, dep.result, dep.error
  FROM job_dependencies d JOIN jobs dep ON dep.id = d.depends_on
 WHERE d.job_id = $1
 ORDER BY dep.created_at, dep.id
"""
_CHILDREN = """
SELECT id, task, status, result, error FROM jobs WHERE parent_id = $1 ORDER BY created_at, id
"""
_MARK_PARENT = "UPDATE jobs SET has_children = true WHERE id = $1 AND NOT has_children"


async def dependencies(db: Db, *, job_id: uuid.UUID) -> list[asyncpg.Record]:
    """The jobs `job_id` depends on (its children too, once it waited for them)."""
    return list(await db.fetch(_DEPENDENCIES, job_id))


async def children(db: Db, *, job_id: uuid.UUID) -> list[asyncpg.Record]:
    """The jobs `job_id` spawned, oldest first."""
    return list(await db.fetch(_CHILDREN, job_id))


async def mark_parent(db: Db, *, job_id: uuid.UUID) -> None:
    """`job_id` has children: cancelling it cancels them (migration 0008)."""
    await db.execute(_MARK_PARENT, job_id)
