"""Checking submissions in the server: the envelope, args against a task's schema, the cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.core.errors import Unprocessable
from tidings.core.validation import ArgsValidators, Validator, check, validate_submission
from tidings.worker.registry import TaskRegistry

REGISTRY = TaskRegistry.from_modules(["tidings.worker.tasks.examples"])
SLEEP_STEPS_SCHEMA = REGISTRY.get("sleep_steps").schema  # type: ignore[union-attr]
UPDATED_AT = datetime(2024, 1, 1, tzinfo=UTC)


def rejection(validator: Validator, value: Any, root: str) -> Unprocessable:
    """The error `check` raises for `value`; fails the test if it accepts it."""
    with pytest.raises(Unprocessable) as caught:
        check(validator, value, root=root, message="rejected")
    return caught.value


def submit_error(body: dict[str, Any]) -> Unprocessable:
    return rejection(validate_submission, body, "body")


def args_error(args: Any) -> Unprocessable:
    validator = ArgsValidators().for_task("sleep_steps", UPDATED_AT, SLEEP_STEPS_SCHEMA)
    return rejection(validator, args, "args")


# --- the submission envelope ----------------------------------------------------------------


def test_a_full_submission_passes() -> None:
    body = {
        "task": "sleep_steps",
        "args": {"steps": 2},
        "queue": "default",
        "priority": -10,
        "delay_s": 0,
        "max_attempts": 100,
        "timeout_s": 0.5,
        "idempotency_key": "k-1",
    }
    check(validate_submission, body, root="body", message="rejected")


def test_the_smallest_submission_passes() -> None:
    check(validate_submission, {"task": "noop"}, root="body", message="rejected")
    check(
        validate_submission,
        {"task": "noop", "run_at": "2030-01-01T00:00:00+00:00"},
        root="body",
        message="rejected",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "noop", "priority": 11}, "body.priority"),
        ({"task": "noop", "priority": 1.5}, "body.priority"),
        ({"task": "noop", "priority": True}, "body.priority"),
        ({"task": "noop", "args": [1, 2]}, "body.args"),
        ({"task": ""}, "body.task"),
        ({"task": 7}, "body.task"),
        ({"task": "noop", "queue": ""}, "body.queue"),
        ({"task": "noop", "delay_s": -1}, "body.delay_s"),
        ({"task": "noop", "max_attempts": 0}, "body.max_attempts"),
        ({"task": "noop", "timeout_s": 0}, "body.timeout_s"),
        ({"task": "noop", "idempotency_key": "x" * 201}, "body.idempotency_key"),
    ],
)
def test_a_bad_envelope_field_is_named(body: dict[str, Any], field: str) -> None:
    error = submit_error(body)
    assert error.status == 422
    assert error.code == "invalid_request"
    assert error.message == "rejected"
    assert error.details["field"] == field
    assert error.details["reason"].startswith(field + " ")


def test_a_missing_task_is_reported_by_name() -> None:
    error = submit_error({"args": {}})
    assert error.details["field"] == "body.task"
    assert "task" in error.details["reason"]


def test_an_unknown_envelope_field_is_rejected() -> None:
    error = submit_error({"task": "noop", "prio": 1})
    assert error.details["field"] == "body"
    assert "prio" in error.details["reason"]


def test_a_non_object_body_is_rejected() -> None:
    assert submit_error([{"task": "noop"}]).details["field"] == "body"  # type: ignore[arg-type]


# --- args against a task's schema -----------------------------------------------------------


def test_good_args_pass() -> None:
    validator = ArgsValidators().for_task("sleep_steps", UPDATED_AT, SLEEP_STEPS_SCHEMA)
    check(validator, {"steps": 3, "delay_s": 0.01}, root="args", message="rejected")
    check(validator, {}, root="args", message="rejected")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"steps": "ten"}, "args.steps"),
        ({"steps": 1.5}, "args.steps"),
        ({"delay_s": "slow"}, "args.delay_s"),
        ({"delay_s": None}, "args.delay_s"),
    ],
)
def test_a_bad_arg_is_named(args: dict[str, Any], field: str) -> None:
    error = args_error(args)
    assert error.status == 422
    assert error.code == "invalid_args"
    assert error.details["field"] == field
    assert error.details["reason"].startswith(field + " must be")


def test_an_unknown_arg_is_rejected() -> None:
    error = args_error({"steps": 1, "stesp": 2})
    assert error.code == "invalid_args"
    assert error.details["field"] == "args"
    assert "stesp" in error.details["reason"]


def test_a_missing_required_arg_is_reported_by_name() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["doc_ids"],
        "properties": {"doc_ids": {"type": "array", "items": {"type": "string"}}},
    }
    validator = ArgsValidators().for_task("embed", UPDATED_AT, schema)
    error = rejection(validator, {}, "args")
    assert error.details["field"] == "args.doc_ids"
    assert "doc_ids" in error.details["reason"]
    items = rejection(validator, {"doc_ids": ["a", 2]}, "args")
    assert items.details["field"] == "args.doc_ids[1]"


# --- the compiled-validator cache -----------------------------------------------------------

STRING_SCHEMA = {"type": "object", "properties": {"n": {"type": "string"}}}
INTEGER_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def accepts(validator: Validator, value: Any) -> bool:
    try:
        check(validator, value, root="args", message="rejected")
    except Unprocessable:
        return False
    return True


def test_the_same_task_version_is_compiled_once() -> None:
    validators = ArgsValidators()
    first = validators.for_task("t", UPDATED_AT, STRING_SCHEMA)
    # Same version: the cached validator is returned; the schema passed is not looked at.
    again = validators.for_task("t", UPDATED_AT, INTEGER_SCHEMA)
    assert again is first
    assert accepts(again, {"n": "x"})


def test_a_new_task_version_is_recompiled() -> None:
    validators = ArgsValidators()
    old = validators.for_task("t", UPDATED_AT, STRING_SCHEMA)
    new = validators.for_task("t", UPDATED_AT + timedelta(seconds=1), INTEGER_SCHEMA)
    assert new is not old
    assert accepts(new, {"n": 1})
    assert not accepts(new, {"n": "x"})
    assert validators.for_task("t", UPDATED_AT + timedelta(seconds=1), STRING_SCHEMA) is new


def test_tasks_are_cached_apart() -> None:
    validators = ArgsValidators()
    strings = validators.for_task("a", UPDATED_AT, STRING_SCHEMA)
    integers = validators.for_task("b", UPDATED_AT, INTEGER_SCHEMA)
    assert strings is not integers
    assert validators.for_task("a", UPDATED_AT, INTEGER_SCHEMA) is strings
    assert validators.for_task("b", UPDATED_AT, STRING_SCHEMA) is integers
