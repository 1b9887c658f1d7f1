"""Statements on `tasks`: the task registry that workers fill and the server reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


# The columns of a registry row, in the order of `_UPSERT_TASK`'s parameters.
TASK_COLUMNS = ("name", "queue", "args_schema", "defaults", "description")


async def upsert_tasks(db: Db, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record what a worker offers, one row per task by column name (`TASK_COLUMNS`),
    replacing older entries, in one round trip."""
    await db.executemany(_UPSERT_TASK, [[row[name] for name in TASK_COLUMNS] for row in rows])


async def get_task(db: Db, *, name: str) -> asyncpg.Record | None:
    """One task's registry row, or None."""
    return await db.fetchrow(_GET_TASK, name)


async def list_tasks(db: Db) -> list[asyncpg.Record]:
    """Every registered task."""
    return list(await db.fetch(_LIST_TASKS))
