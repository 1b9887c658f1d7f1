"""Checking submissions without task code: the envelope, and args against the registry schema."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import fastjsonschema

from core.errors import Unprocessable

Validator = Callable[[Any], Any]

SUBMISSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task"],
    "additionalProperties": False,
    "properties": {
        "task": {"type": "string", "minLength": 1, "maxLength": 200},
        "args": {"type": "object"},
        "queue": {"type": "string", "minLength": 1, "maxLength": 200},
        "priority": {"type": "integer", "minimum": -10, "maximum": 10},
        "delay_s": {"type": "number", "minimum": 0, "maximum": 31_536_000},
        "run_at": {"type": "string", "minLength": 1, "maxLength": 64},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604_800},
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
        "cache": {"type": "boolean"},
    },
}

MAX_BATCH = 10_000

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["jobs"],
    "additionalProperties": False,
    "properties": {
        "jobs": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {"type": "object"}}
    },
}


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


class ArgsValidators:
    """Compiled args validators, one per task version (name and registry `updated_at`)."""

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[datetime, Validator]] = {}

    def for_task(self, name: str, updated_at: datetime, schema: dict[str, Any]) -> Validator:
        """The validator for this version of the task's schema, compiled once."""
        cached = self._compiled.get(name)
        if cached is not None and cached[0] == updated_at:
            return cached[1]
        validator: Validator = fastjsonschema.compile(schema)
        self._compiled[name] = (updated_at, validator)
        return validator
