"""The OpenAPI 3.1 document of the HTTP API, written by hand to match what the routes do.

The fuzzing test (schemathesis) holds the two together: every response it provokes must
have a status and a body this document declares.
"""

from __future__ import annotations

from typing import Any

from tidings.server.validation import MAX_BATCH, SUBMISSION_SCHEMA

NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
STATUS = {
    "type": "string",
    "enum": ["queued", "running", "retrying", "succeeded", "failed", "cancelled"],
}
KIND = {
    "type": "string",
    "enum": [
        "queued",
        "started",
        "progress",
        "log",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
        "requeued",
    ],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = {name: {"schema": {"type": "string"}} for name in headers}
    return response


ERRORS: dict[str, dict[str, Any]] = {
    "400": _error("The body is not a JSON object."),
    "401": _error("A valid API key (or stream token) is required.", ("WWW-Authenticate",)),
    "404": _error("No such job (for this tenant)."),
    "409": _error("Illegal transition, or an idempotency key reused with another body."),
    "413": _error("The body, or a job's args, is larger than its limit."),
    "422": _error("Unknown task, args or fields that fail validation; names the field."),
    "429": _error("Rate or stream limit reached.", ("Retry-After",)),
    "503": _error("Postgres or Redis is unreachable, or this server is full.", ("Retry-After",)),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in codes}


JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The job's id (a UUID; anything else names no job).",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    },
    "Progress": {
        "type": "object",
        "required": ["current", "total", "fraction", "message", "eta_s"],
        "properties": {
            "current": NULLABLE_NUMBER,
            "total": NULLABLE_NUMBER,
            "fraction": NULLABLE_NUMBER,
            "message": NULLABLE_STRING,
            "eta_s": NULLABLE_NUMBER,
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "task",
            "args",
            "queue",
            "priority",
            "status",
            "attempt",
            "max_attempts",
            "progress",
            "result",
            "error",
            "links",
            "created_at",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "task": {"type": "string"},
            "args": {"type": "object"},
            "queue": {"type": "string"},
            "priority": {"type": "integer"},
            "status": STATUS,
            "attempt": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "seq": {"type": "integer", "description": "The job's last event seq."},
            "timeout_s": {"type": "number"},
            "progress": _ref("Progress"),
            "result": {},
            "error": {
                "type": ["object", "null"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "traceback": NULLABLE_STRING,
                },
            },
            "worker_id": NULLABLE_STRING,
            "cached_from": NULLABLE_STRING,
            "cancel_requested_at": TIMESTAMP,
            "created_at": TIMESTAMP,
            "run_at": TIMESTAMP,
            "started_at": TIMESTAMP,
            "finished_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "links": {
                "type": "object",
                "required": ["self", "events"],
                "properties": {"self": {"type": "string"}, "events": {"type": "string"}},
            },
        },
    },
    "Event": {
        "type": "object",
        "required": ["job_id", "seq", "kind", "status", "attempt", "at"],
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "task": {"type": "string"},
            "queue": {"type": "string"},
            "tenant": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1},
            "kind": KIND,
            "status": STATUS,
            "attempt": {"type": "integer"},
            "current": NULLABLE_NUMBER,
            "total": NULLABLE_NUMBER,
            "message": NULLABLE_STRING,
            "data": {},
            "at": TIMESTAMP,
        },
    },
}


def _sse(kinds: Any) -> dict[str, Any]:
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
                        "contentSchema": _ref("Event"),
                    },
                    "event": {"type": "string", "enum": kinds},
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                },
            }
        }
    }


JOB_SSE = _sse(KIND["enum"])
ALL_SSE = _sse([*KIND["enum"], "resync"])


JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in (
        ("GetJob", "getJob"),
        ("JobEvents", "getJobEvents"),
        ("CancelJob", "cancelJob"),
        ("RetryJob", "retryJob"),
    )
}


def document(task_names: list[str]) -> dict[str, Any]:
    """The whole OpenAPI document; `task` is one of the tasks workers registered."""
    job = _json(_ref("Job"), "The job.")
    linked_job = {**job, "links": JOB_LINKS}
    submit = {**SUBMISSION_SCHEMA, "properties": {**SUBMISSION_SCHEMA["properties"]}}
    if task_names:
        submit["properties"]["task"] = {"type": "string", "enum": task_names}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings",
            "version": "0.1.0",
            "description": "Durable jobs on ARQ with live progress over SSE.",
        },
        "components": {
            "schemas": {**SCHEMAS, "SubmitRequest": submit},
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/jobs": {
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit a job",
                    "parameters": [
                        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SubmitRequest")}},
                    },
                    "responses": {
                        "202": {
                            **linked_job,
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        "200": {
                            **_json(_ref("Job"), "The job an idempotency key already names."),
                            "links": JOB_LINKS,
                        },
                        **_errors("400", "401", "409", "413", "422", "429", "503"),
                    },
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": STATUS},
                        {"name": "task", "in": "query", "schema": {"type": "string"}},
                        {"name": "queue", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["jobs", "next_cursor", "events"],
                                "properties": {
                                    "jobs": {"type": "array", "items": _ref("Job")},
                                    "next_cursor": NULLABLE_STRING,
                                    "events": {
                                        "type": "string",
                                        "description": "The tenant's /events, with a token.",
                                    },
                                },
                            },
                            "One page of jobs.",
                        ),
                        **_errors("401", "422", "429", "503"),
                    },
                },
            },
            "/jobs/batch": {
                "post": {
                    "summary": "Submit many jobs in one transaction",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["jobs"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "jobs": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": MAX_BATCH,
                                            "items": _ref("SubmitRequest"),
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "required": ["ids", "count"],
                                "properties": {
                                    "ids": {"type": "array", "items": {"type": "string"}},
                                    "count": {"type": "integer"},
                                },
                            },
                            "Every job was created.",
                        ),
                        **_errors("400", "401", "409", "413", "422", "429", "503"),
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
                        "200": _json(_ref("Job"), "It was waiting: it is cancelled now."),
                        "202": _json(_ref("Job"), "It is running: its worker was told."),
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
                        "202": _json(_ref("Job"), "Queued as a new attempt."),
                        **_errors("401", "404", "409", "429", "503"),
                    },
                }
            },
            "/jobs/{job_id}/events": {
                "get": {
                    "operationId": "getJobEvents",
                    "summary": "A job's events: live SSE, or the history as JSON",
                    "parameters": [
                        JOB_ID,
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "A stream token from the job's links.events.",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "SSE (id = seq, event = kind, data = Event), or "
                            "with Accept: application/json the history.",
                            "content": {
                                **JOB_SSE,
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["events"],
                                        "properties": {
                                            "events": {"type": "array", "items": _ref("Event")}
                                        },
                                    }
                                },
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
                        "200": {"description": "SSE of Event.", "content": ALL_SSE},
                        **_errors("401", "429", "503"),
                    },
                }
            },
            "/stats": {
                "get": {
                    "summary": "The caller's jobs per status (for the dashboard)",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["counts", "cap"],
                                "properties": {
                                    "counts": {
                                        "type": "object",
                                        "properties": {
                                            status: {"type": "integer", "minimum": 0}
                                            for status in STATUS["enum"]
                                        },
                                    },
                                    "cap": {
                                        "type": "integer",
                                        "description": "Counting stops here: a count equal "
                                        "to it means at least that many.",
                                    },
                                },
                            },
                            "Counts per status.",
                        ),
                        **_errors("401", "429", "503"),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The live dashboard (its data comes from this API)",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "An HTML page.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/tasks": {
                "get": {
                    "summary": "Tasks the workers registered",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["tasks"],
                                "properties": {"tasks": {"type": "array"}},
                            },
                            "The registry.",
                        ),
                        **_errors("401", "429", "503"),
                    },
                }
            },
            "/queues": {
                "get": {
                    "summary": "Depth, age and consumers of each queue",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["queues"],
                                "properties": {"queues": {"type": "array"}},
                            },
                            "The queues.",
                        ),
                        **_errors("401", "429", "503"),
                    },
                }
            },
            "/workers": {
                "get": {
                    "summary": "Registered workers and their heartbeats",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["workers"],
                                "properties": {"workers": {"type": "array"}},
                            },
                            "The workers.",
                        ),
                        **_errors("401", "429", "503"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "The process answers.")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness",
                    "security": [],
                    "responses": {
                        "200": _json({"type": "object"}, "Postgres and Redis answer."),
                        "503": _json({"type": "object"}, "One of them does not (named in checks)."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Text exposition.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors("503"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
                }
            },
        },
    }
