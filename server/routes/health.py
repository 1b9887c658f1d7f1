"""`/healthz` (the process answers) and `/readyz` (Postgres and Redis answer too)."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db.pool import CONNECTION_ERRORS, ping
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of

CHECK_TIMEOUT_S = 1.0
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, *CONNECTION_ERRORS)


async def healthz(request: Request) -> Response:
    """Liveness only: no dependency is checked."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: Postgres and Redis each answer within a short timeout."""
    state = state_of(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await ping(state.pool)
        checks["postgres"] = "ok"
    except CONNECTION_ERRORS as exc:
        checks["postgres"] = f"down: {exc.__class__.__name__}"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await state.redis.ping()
        checks["redis"] = "ok"
    except REDIS_ERRORS as exc:
        checks["redis"] = f"down: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "2"},
    )


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
