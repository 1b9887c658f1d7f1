"""The OpenAPI document is made from the API's shapes, and the validators from the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tidings.core import shapes
from tidings.core.events import EventKind
from tidings.core.model import Status, job_json
from tidings.core.validation import BATCH_SCHEMA, SUBMISSION_SCHEMA
from tidings.server.openapi import document


def test_every_body_schema_is_its_shape() -> None:
    schemas = document([])["components"]["schemas"]
    for shape in (shapes.Job, shapes.Event, shapes.Progress, shapes.JobPage, shapes.QueueInfo):
        schema = schemas[shape.__name__]
        assert set(schema["properties"]) == set(shape.__annotations__), shape.__name__
        assert set(schema["required"]) == shape.__required_keys__, shape.__name__
    assert schemas["Status"]["enum"] == list(Status)
    assert schemas["EventKind"]["enum"] == list(EventKind)


def test_the_submission_validators_are_the_request_shapes() -> None:
    schemas = document([])["components"]["schemas"]
    assert SUBMISSION_SCHEMA["properties"] == schemas["SubmitRequest"]["properties"]
    assert SUBMISSION_SCHEMA["required"] == ["task"]
    assert SUBMISSION_SCHEMA["additionalProperties"] is False
    batch_jobs = BATCH_SCHEMA["properties"]["jobs"]
    assert (batch_jobs["minItems"], batch_jobs["maxItems"]) == (1, shapes.MAX_BATCH)


def test_registered_task_names_become_the_task_enum() -> None:
    submit = document(["noop", "embed"])["components"]["schemas"]["SubmitRequest"]
    assert submit["properties"]["task"] == {"type": "string", "enum": ["noop", "embed"]}
    assert (
        "enum" not in document([])["components"]["schemas"]["SubmitRequest"]["properties"]["task"]
    )


def test_a_job_row_renders_every_field_of_the_job_shape() -> None:
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        name: None
        for name in [
            "progress_current",
            "progress_total",
            "progress_message",
            "result",
            "error",
            "worker_id",
            "cached_from",
            "cancel_requested_at",
            "started_at",
            "finished_at",
            "batch_id",
            "parent_id",
            "depends_on",
        ]
    }
    row.update(
        id="6e0c1b4e-0000-4000-8000-000000000000",
        task="noop",
        args={},
        queue="default",
        priority=0,
        status="queued",
        attempt=1,
        max_attempts=3,
        seq=1,
        timeout_s=300.0,
        created_at=now,
        run_at=now,
        updated_at=now,
        on_dependency_failure="fail",
    )
    rendered = job_json(row)
    assert set(rendered) == set(shapes.Job.__annotations__)
    assert set(rendered["progress"]) == set(shapes.Progress.__annotations__)
