"""`/workers` and `/queues`: who is alive, and the load on each queue."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import workers
from tidings.core.model import iso
from tidings.core.shapes import WorkerInfo
from tidings.server.auth import acts_as_operator, tenant_of
from tidings.server.queue_limits import add_limits
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of


async def list_workers(request: Request) -> Response:
    """GET /workers: registered workers and their last heartbeat.

    The operator sees each worker's host, pid and every job it runs. A tenant sees the
    same workers without where they run (an id that names no host), running only its
    own jobs.
    """
    state = state_of(request)
    operator = acts_as_operator(request)
    rows = await workers.list_workers(
        state.pool,
        live_within_s=workers.live_within_s(state.settings.heartbeat_s),
        tenant=None if operator else tenant_of(request),
    )
    listed: list[WorkerInfo] = [
        {
            "id": row["id"] if operator else opaque_id(row["id"]),
            "hostname": row["hostname"] if operator else None,
            "pid": row["pid"] if operator else None,
            "queues": row["queues"],
            "concurrency": row["concurrency"],
            "started_at": iso(row["started_at"]),
            "heartbeat_at": iso(row["heartbeat_at"]),
            "running": row["running"],
        }
        for row in rows
    ]
    return JSONResponse({"workers": listed})


def opaque_id(worker_id: str) -> str:
    """A stable id for a worker that does not name its host or pid."""
    return "w-" + hashlib.sha256(worker_id.encode()).hexdigest()[:12]


async def list_queues(request: Request) -> Response:
    """GET /queues: the caller's waiting and running jobs per queue, and live consumers."""
    state = state_of(request)
    rows = await workers.queue_stats(
        state.pool,
        tenant=tenant_of(request),
        live_within_s=workers.live_within_s(state.settings.heartbeat_s),
    )
    queues = [dict(row.items()) for row in rows]
    await add_limits(state.pool, queues, tenant_of(request))
    return JSONResponse({"queues": queues})


routes = [
    Route("/queues", list_queues, methods=["GET"]),
    Route("/workers", list_workers, methods=["GET"]),
]
