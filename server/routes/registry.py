"""`/tasks` and `/workers`: what workers offer and who is alive."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import registry
from tidings.core.model import iso
from tidings.server.auth import tenant_of
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of


async def list_tasks(request: Request) -> Response:
    """GET /tasks: the registry that workers fill at start."""
    rows = await registry.list_tasks(state_of(request).pool)
    return JSONResponse(
        {
            "tasks": [
                {
                    "name": row["name"],
                    "queue": row["queue"],
                    "description": row["description"],
                    "args_schema": row["args_schema"],
                    "defaults": row["defaults"],
                    "updated_at": iso(row["updated_at"]),
                }
                for row in rows
            ]
        }
    )


async def list_workers(request: Request) -> Response:
    """GET /workers: registered workers and their last heartbeat."""
    rows = await registry.list_workers(state_of(request).pool)
    return JSONResponse(
        {
            "workers": [
                {
                    "id": row["id"],
                    "hostname": row["hostname"],
                    "pid": row["pid"],
                    "queues": row["queues"],
                    "concurrency": row["concurrency"],
                    "started_at": iso(row["started_at"]),
                    "heartbeat_at": iso(row["heartbeat_at"]),
                    "running": row["running"],
                }
                for row in rows
            ]
        }
    )


async def list_queues(request: Request) -> Response:
    """GET /queues: the caller's waiting and running jobs per queue, and live consumers."""
    state = state_of(request)
    rows = await state.pool.fetch(
        registry.QUEUE_STATS, tenant_of(request), 3 * state.settings.heartbeat_s
    )
    return JSONResponse({"queues": [dict(row.items()) for row in rows]})


routes = [
    Route("/queues", list_queues, methods=["GET"]),
    Route("/tasks", list_tasks, methods=["GET"]),
    Route("/workers", list_workers, methods=["GET"]),
]
