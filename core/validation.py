"""Checking submissions without task code: the envelope, and args against the registry schema."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import fastjsonschema
from pydantic import TypeAdapter

from tidings.core.db import tasks
from tidings.core.errors import Unprocessable
from tidings.core.shapes import BatchRequest, NewBatchRequest, SubmitRequest

Validator = Callable[[Any], Any]

# The envelope of a submission, from its shape; args are checked against the task's own
# schema afterwards. A batch's items are each checked as a submission of their own, so
# that the answer can name every invalid one: the batch envelope takes any objects.
SUBMISSION_SCHEMA: dict[str, Any] = TypeAdapter(SubmitRequest).json_schema()
BATCH_SCHEMA: dict[str, Any] = TypeAdapter(BatchRequest).json_schema()
BATCH_SCHEMA.pop("$defs")
BATCH_SCHEMA["properties"]["jobs"]["items"] = {"type": "object"}
NEW_BATCH_SCHEMA: dict[str, Any] = TypeAdapter(NewBatchRequest).json_schema()
NEW_BATCH_SCHEMA.pop("$defs")
NEW_BATCH_SCHEMA["properties"]["jobs"]["items"] = {"type": "object"}


def check(validator: Validator, value: Any, *, root: str, message: str) -> None:
    """Run a compiled validator; a failure is a 422 naming the offending field."""
    try:
        validator(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        name = exc.name or "data"
        field = root + name.removeprefix("data")
        if exc.rule == "required" and isinstance(exc.value, dict):
            missing = [key for key in exc.rule_definition if key not in exc.value]
            field = f"{field}.{missing[0]}" if missing else field
        details = {"field": field, "reason": exc.message.replace(name, field, 1)}
        code = "invalid_args" if root == "args" else "invalid_request"
        raise Unprocessable(message, details, code=code) from None


validate_submission: Validator = fastjsonschema.compile(SUBMISSION_SCHEMA)
validate_batch: Validator = fastjsonschema.compile(BATCH_SCHEMA)
validate_new_batch: Validator = fastjsonschema.compile(NEW_BATCH_SCHEMA)


class ArgsValidators:
    """Compiled args validators, one per task version (name and registry `updated_at`).

    It also keeps the registry rows themselves for `rows_ttl_s`, so a submission does not
    read the `tasks` table every time; a worker that re-registers a task with a new
    schema is seen within that time.
    """

    def __init__(self, rows_ttl_s: float = 2.0) -> None:
        self._compiled: dict[str, tuple[datetime, Validator]] = {}
        self._rows: dict[str, tuple[float, asyncpg.Record]] = {}
        self._rows_ttl_s = rows_ttl_s

    async def task_row(self, pool: asyncpg.Pool, name: str) -> asyncpg.Record | None:
        """The task's registry row (cached briefly), or None for an unknown task."""
        cached = self._rows.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._rows_ttl_s:
            return cached[1]
        row = await tasks.get_task(pool, name=name)
        if row is not None:  # unknown tasks are not cached: a worker may register them now
            self._rows[name] = (now, row)
        return row

    def for_task(self, name: str, updated_at: datetime, schema: dict[str, Any]) -> Validator:
        """The validator for this version of the task's schema, compiled once."""
        cached = self._compiled.get(name)
        if cached is not None and cached[0] == updated_at:
            return cached[1]
        validator: Validator = fastjsonschema.compile(schema)
        self._compiled[name] = (updated_at, validator)
        return validator
