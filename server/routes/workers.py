"""`/workers` and `/queues`: who is alive, and the load on each queue."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import workers
from tidings.core.model import iso
from tidings.server.auth import tenant_of
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of


async def list_workers(request: Request) -> Response:
    """GET /workers: registered workers and their last heartbeat."""
    state = state_of(request)
    rows = await workers.list_workers(
        state.pool, live_within_s=workers.live_within_s(state.settings.heartbeat_s)
    )
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
    rows = await workers.queue_stats(
        state.pool,
        tenant=tenant_of(request),
        live_within_s=workers.live_within_s(state.settings.heartbeat_s),
    )
    return JSONResponse({"queues": [dict(row.items()) for row in rows]})


routes = [
    Route("/queues", list_queues, methods=["GET"]),
    Route("/workers", list_workers, methods=["GET"]),
]
