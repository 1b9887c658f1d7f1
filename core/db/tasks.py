"""Statements on `tasks`: the task registry that workers fill and the server reads."""

from __future__ import annotations

from typing import Any

import asyncpg

from tidings.core.db.pool import Db

_UPSERT_TASK = """
INSERT INTO tasks (name, queue, args_schema, defaults, description, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (name) DO UPDATE SET
    queue = EXCLUDED.queue, args_schema = EXCLUDED.args_schema,
    defaults = EXCLUDED.defaults, description = EXCLUDED.description, updated_at = now()
"""
_GET_TASK = "SELECT * FROM tasks WHERE name = $1"
_LIST_TASKS = "SELECT * FROM tasks ORDER BY name"


async def upsert_task(
    db: Db,
    *,
    name: str,
    queue: str,
    args_schema: dict[str, Any],
    defaults: dict[str, Any],
    description: str,
) -> None:
    """Record what a worker offers under `name`, replacing an older entry."""
    await db.execute(_UPSERT_TASK, name, queue, args_schema, defaults, description)


async def get_task(db: Db, *, name: str) -> asyncpg.Record | None:
    """One task's registry row, or None."""
    return await db.fetchrow(_GET_TASK, name)


async def list_tasks(db: Db) -> list[asyncpg.Record]:
    """Every registered task."""
    return list(await db.fetch(_LIST_TASKS))
