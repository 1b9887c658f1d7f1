"""`/tasks`: the tasks workers have registered, with their args schemas."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import tasks
from tidings.core.model import iso
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of


async def list_tasks(request: Request) -> Response:
    """GET /tasks: the registry that workers fill at start."""
    rows = await tasks.list_tasks(state_of(request).pool)
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


routes = [Route("/tasks", list_tasks, methods=["GET"])]
