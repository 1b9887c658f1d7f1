"""The `/batches` part of the OpenAPI document (`server/openapi.py` merges it in)."""

from __future__ import annotations

from typing import Any

from tidings.core import shapes

BATCH_ID = {
    "name": "batch_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The batch's id (a UUID; anything else names no batch).",
}


# One event of a batch's stream: `data` is JSON (a member's transition, a snapshot, or the
# end); `job` and `batch.finished` carry the batch seq as `id`.
BATCH_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json"},
        "event": {"type": "string", "enum": ["job", "progress", "batch.finished"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
    },
}


def batch_paths(json: Any, errors: Any, ref: Any, events_parameters: list[Any]) -> dict[str, Any]:
    """Each `/batches` path's operations, built with `openapi.py`'s helpers."""
    after = [p for p in events_parameters if p["name"] == "after"]
    return {
        "/batches": {
            "post": {
                "operationId": "createBatch",
                "summary": "Create a batch: its jobs (and their dependencies) in one transaction",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(shapes.NewBatchRequest)}},
                },
                "responses": {
                    "201": json(shapes.NewBatch, "The batch, with its jobs' ids in order."),
                    **errors("400", "401", "403", "409", "413", "415", "422", "429", "503"),
                },
            },
            "get": {
                "summary": "The caller's batches, newest first",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": json(shapes.BatchPage, "One page of batches."),
                    **errors("401", "422", "429", "503"),
                },
            },
        },
        "/batches/{batch_id}": {
            "get": {
                "summary": "A batch: counts per status, aggregate progress and ETA",
                "parameters": [BATCH_ID],
                "responses": {
                    "200": json(shapes.Batch, "The batch."),
                    **errors("401", "404", "429", "503"),
                },
            }
        },
        "/batches/{batch_id}/events": {
            "get": {
                "operationId": "getBatchEvents",
                "summary": "The batch's own gapless stream (SSE, resumable with Last-Event-ID)",
                "parameters": [BATCH_ID, *after],
                "responses": {
                    "200": {
                        "description": "SSE: `job` (id = batch seq) per member transition, "
                        "`progress` snapshots (no id), and `batch.finished` (id) at the end.",
                        "content": {"text/event-stream": {"schema": BATCH_SSE_EVENT}},
                    },
                    **errors("401", "404", "422", "429", "503"),
                },
            }
        },
        "/batches/{batch_id}/cancel": {
            "post": {
                "summary": "Cancel every member of the batch that has not ended",
                "parameters": [BATCH_ID],
                "responses": {
                    "200": json(shapes.BatchAction, "How many were cancelled."),
                    **errors("401", "404", "429", "503"),
                },
            }
        },
        "/batches/{batch_id}/retry": {
            "post": {
                "summary": "Run every failed member again (and what failed with it)",
                "parameters": [BATCH_ID],
                "responses": {
                    "200": json(shapes.BatchAction, "How many were retried."),
                    **errors("401", "404", "429", "503"),
                },
            }
        },
    }
