"""The finding and bulk parts of the OpenAPI document (`server/openapi.py` merges them in):
the job list's filters and paging, `POST /jobs/bulk` and `GET /stats/trends`."""

from __future__ import annotations

from typing import Any

from tidings.core import finding_shapes
from tidings.core.job_pages import COUNT_CAP

_TEXT = {"type": "string", "maxLength": 200}
_SUBSTRING = {**_TEXT, "minLength": 3}
_TIME = {"type": "string", "format": "date-time"}
FILTER_PARAMETERS = [
    {"name": "task_prefix", "in": "query", "schema": _TEXT},
    {"name": "task_contains", "in": "query", "schema": _SUBSTRING},
    {"name": "queue_prefix", "in": "query", "schema": _TEXT},
    {"name": "queue_contains", "in": "query", "schema": _SUBSTRING},
    {
        "name": "created_after",
        "in": "query",
        "schema": _TIME,
        "description": "Created at or after (ISO 8601 with a UTC offset).",
    },
    {
        "name": "created_before",
        "in": "query",
        "schema": _TIME,
        "description": "Created before (ISO 8601 with a UTC offset).",
    },
]
PAGING_PARAMETERS = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "string", "enum": ["newest", "oldest"]},
        "description": "`oldest`: the page of the oldest jobs (not with a cursor).",
    },
    {
        "name": "position",
        "in": "query",
        "schema": {"type": "string", "enum": ["true", "false"]},
        "description": f"Add the page's position; counts stop at {COUNT_CAP:,}.",
    },
]


def finding_paths(json: Any, errors: Any, ref: Any) -> dict[str, Any]:
    """`/jobs/bulk` and `/stats/trends`, built with `openapi.py`'s helpers."""
    return {
        "/jobs/bulk": {
            "post": {
                "summary": "Cancel or retry chosen jobs, or retry the failed jobs of a filter",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    ref(finding_shapes.BulkByIds),
                                    ref(finding_shapes.BulkByFilter),
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": json(finding_shapes.BulkAnswer, "One outcome per job."),
                    **errors("400", "401", "403", "413", "415", "422", "429", "503"),
                },
            }
        },
        "/stats/trends": {
            "get": {
                "summary": "Finished jobs per minute, wait and run times, per task and queue",
                "parameters": [
                    {
                        "name": "window",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["15m", "30m", "1h"]},
                    },
                    {"name": "task", "in": "query", "schema": {"type": "string"}},
                    {"name": "queue", "in": "query", "schema": {"type": "string"}},
                    *FILTER_PARAMETERS,
                ],
                "responses": {
                    "200": json(finding_shapes.Trends, "The trends of the window."),
                    **errors("401", "422", "429", "503"),
                },
            }
        },
    }
