"""The OpenAPI 3.1 document, made from the API's shapes.

Every request and response body is a TypedDict of `core/shapes.py`, turned into a JSON
schema by pydantic; the request shapes are also what the server validates bodies with
(`server/validation.py`). Declared here is only what the shapes cannot say: each path's
operations, which shape each takes and answers, parameters and errors. The fuzzing test
(schemathesis) holds the server to it: every response must have a status and a body the
document declares.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from tidings import __version__
from tidings.core import finding_shapes, shapes
from tidings.core.events import EventKind
from tidings.core.model import Status
from tidings.server.openapi_batches import batch_paths
from tidings.server.openapi_finding import FILTER_PARAMETERS, PAGING_PARAMETERS, finding_paths

REF = "#/components/schemas/{model}"
REQUEST_SHAPES = (
    shapes.SubmitRequest,
    shapes.BatchRequest,
    shapes.NewBatchRequest,
    finding_shapes.BulkByIds,
    finding_shapes.BulkByFilter,
)
RESPONSE_SHAPES = (
    shapes.ErrorBody,
    shapes.Job,
    shapes.Event,
    shapes.JobPage,
    shapes.BatchCreated,
    shapes.Batch,
    shapes.NewBatch,
    shapes.BatchPage,
    shapes.BatchAction,
    shapes.History,
    shapes.Stats,
    shapes.TaskList,
    shapes.WorkerList,
    shapes.QueueList,
    shapes.Health,
    finding_shapes.BulkAnswer,
    finding_shapes.Trends,
)


@functools.cache
def component_schemas() -> dict[str, Any]:
    """Every shape's JSON schema, and the schemas they refer to, by name (built once: the
    document is public, and building the schemas takes milliseconds)."""
    schemas: dict[str, Any] = {}
    shapes_by_mode: tuple[tuple[JsonSchemaMode, tuple[Any, ...]], ...] = (
        ("validation", REQUEST_SHAPES),
        ("serialization", RESPONSE_SHAPES),
    )
    for mode, group in shapes_by_mode:
        for shape in group:
            schema = TypeAdapter(shape).json_schema(mode=mode, ref_template=REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[shape.__name__] = schema
    return schemas


def _ref(shape: Any) -> dict[str, str]:
    return {"$ref": REF.format(model=shape.__name__)}


def _json(shape: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(shape)}}}


def _error(description: str, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    response = _json(shapes.ErrorBody, description)
    if headers:
        response["headers"] = {name: {"schema": {"type": "string"}} for name in headers}
    return response


ERRORS: dict[str, dict[str, Any]] = {
    "400": _error("The body is not a JSON object."),
    "401": _error("A valid API key (or stream token) is required.", ("WWW-Authenticate",)),
    "403": _error(
        "An operator surface asked with a tenant's key; with auth off, a request from "
        "another site's page or for another host."
    ),
    "404": _error("No such job (for this tenant)."),
    "409": _error(
        "Illegal transition, an idempotency key reused with another body, or a concurrency "
        "key at its limit for a task whose key_strategy is cancel_newest "
        "(`concurrency_key_full`, naming `running_job_id`)."
    ),
    "413": _error("The body, or a job's args, is larger than its limit."),
    "415": _error("The body says it is not application/json."),
    "422": _error("Unknown task, args or fields that fail validation; names the field."),
    "429": _error("Rate or stream limit reached.", ("Retry-After",)),
    "503": _error("Postgres or Redis is unreachable, or this server is full.", ("Retry-After",)),
}
READ_ERRORS = ("401", "429", "503")


def _errors(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in codes}


def _page(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _sse(kinds: list[str]) -> dict[str, Any]:
    """A text/event-stream whose events carry an `Event` as JSON in `data`."""
    return {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": _ref(shapes.Event),
                    },
                    "event": {"type": "string", "enum": kinds},
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                },
            }
        }
    }


JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The job's id (a UUID; anything else names no job).",
}
JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in (
        ("GetJob", "getJob"),
        ("JobEvents", "getJobEvents"),
        ("CancelJob", "cancelJob"),
        ("RetryJob", "retryJob"),
    )
}
LIST_PARAMETERS = [
    {"name": "status", "in": "query", "schema": _ref(Status)},
    {"name": "task", "in": "query", "schema": {"type": "string"}},
    {"name": "queue", "in": "query", "schema": {"type": "string"}},
    {
        "name": "id_prefix",
        "in": "query",
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F-]*$"},
        "description": "Only jobs whose id starts with these 6 to 32 hex digits.",
    },
    *FILTER_PARAMETERS,
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    *PAGING_PARAMETERS,
]
EVENTS_PARAMETERS = [
    JOB_ID,
    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {
        "name": "before",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1},
        "description": "JSON history only: the page of events just below this seq.",
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 5000},
        "description": "JSON history only: events per page (default 1000).",
    },
    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer", "minimum": 0}},
    {
        "name": "token",
        "in": "query",
        "schema": {"type": "string"},
        "description": "A stream token from the job's links.events.",
    },
]


def _get(summary: str, shape: Any, description: str, *errors: str) -> dict[str, Any]:
    """A GET answering one shape, with the errors every read can get plus `errors`."""
    return {
        "get": {
            "summary": summary,
            "responses": {"200": _json(shape, description), **_errors(*READ_ERRORS, *errors)},
        }
    }


def _public(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A GET that needs no key."""
    return {"get": {"summary": summary, "security": [], "responses": responses}}


def paths() -> dict[str, Any]:
    """Each path's operations."""
    job = {**_json(shapes.Job, "The job."), "links": JOB_LINKS}
    return {
        "/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "minLength": 1, "maxLength": shapes.MAX_NAME},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(shapes.SubmitRequest)}},
                },
                "responses": {
                    "202": {**job, "headers": {"Location": {"schema": {"type": "string"}}}},
                    "200": {
                        **_json(shapes.Job, "The job an idempotency key already names."),
                        "links": JOB_LINKS,
                    },
                    **_errors("400", "401", "403", "409", "413", "415", "422", "429", "503"),
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": LIST_PARAMETERS,
                "responses": {
                    "200": _json(shapes.JobPage, "One page of jobs."),
                    **_errors("401", "422", "429", "503"),
                },
            },
        },
        "/jobs/batch": {
            "post": {
                "summary": "Submit many jobs in one transaction",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(shapes.BatchRequest)}},
                },
                "responses": {
                    "202": _json(shapes.BatchCreated, "Every job was created."),
                    **_errors("400", "401", "403", "409", "413", "415", "422", "429", "503"),
                },
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "Read a job",
                "parameters": [JOB_ID],
                "responses": {"200": job, **_errors("401", "404", "429", "503")},
            }
        },
        "/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a job",
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(shapes.Job, "It was waiting: it is cancelled now."),
                    "202": _json(shapes.Job, "It is running: its worker was told."),
                    **_errors("401", "404", "409", "429", "503"),
                },
            }
        },
        "/jobs/{job_id}/retry": {
            "post": {
                "operationId": "retryJob",
                "summary": "Run a failed or cancelled job again",
                "parameters": [JOB_ID],
                "responses": {
                    "202": _json(shapes.Job, "Queued as a new attempt."),
                    **_errors("401", "404", "409", "429", "503"),
                },
            }
        },
        "/jobs/{job_id}/events": {
            "get": {
                "operationId": "getJobEvents",
                "summary": "A job's events: live SSE, or the history as JSON",
                "parameters": EVENTS_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "SSE (id = seq, event = kind, data = Event), or "
                        "with Accept: application/json the history.",
                        "content": {
                            **_sse(list(EventKind)),
                            "application/json": {"schema": _ref(shapes.History)},
                        },
                    },
                    **_errors("401", "404", "422", "429", "503"),
                },
            }
        },
        "/events": {
            "get": {
                "summary": "Live events of every job of the tenant (no replay)",
                "responses": {
                    "200": {
                        "description": "SSE of Event.",
                        "content": _sse([*EventKind, "resync"]),
                    },
                    **_errors(*READ_ERRORS),
                },
            }
        },
        "/stats": _get("The caller's jobs per status (for the dashboard)", shapes.Stats, "Counts."),
        "/tasks": _get("Tasks the workers registered", shapes.TaskList, "The registry."),
        "/queues": _get("Depth, age and consumers of each queue", shapes.QueueList, "Queues."),
        "/workers": _get("Registered workers and their heartbeats", shapes.WorkerList, "Workers."),
        "/": _public(
            "The live dashboard (its data comes from this API)",
            {"200": _page("text/html", "An HTML page.")},
        ),
        "/docs": _public("This API's documentation", {"200": _page("text/html", "A page.")}),
        "/healthz": _public("Liveness", {"200": _json(shapes.Health, "The process answers.")}),
        "/readyz": _public(
            "Readiness",
            {
                "200": _json(shapes.Health, "Postgres and Redis answer."),
                "503": _json(shapes.Health, "One of them does not (named in checks)."),
            },
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (the operator token, not a tenant's key)",
                "responses": {
                    "200": _page("text/plain", "Text exposition."),
                    **_errors("401", "403", "503"),
                },
            }
        },
        "/openapi.json": _public(
            "This document", {"200": _page("application/json", "The OpenAPI document.")}
        ),
        **batch_paths(_json, _errors, _ref, EVENTS_PARAMETERS),
        **finding_paths(_json, _errors, _ref),
    }


def document(task_names: list[str]) -> dict[str, Any]:
    """The whole OpenAPI document; `task` is one of the tasks workers registered."""
    schemas = dict(component_schemas())
    if task_names:
        submit = schemas["SubmitRequest"]
        schemas["SubmitRequest"] = {
            **submit,
            "properties": {**submit["properties"], "task": {"type": "string", "enum": task_names}},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings",
            "version": __version__,
            "description": "Durable jobs on ARQ with live progress over SSE.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": paths(),
    }
