"""`GET /stats/trends`: the caller's finished jobs per minute and their wait and run times,
for the dashboard's trends panel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import trends
from tidings.core.job_filter import invalid, parse_filter
from tidings.server.auth import tenant_of
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of

WINDOWS_S = {"15m": 900, "30m": 1800, "1h": 3600}


def parse_window(raw: str | None) -> int:
    """The window's length in seconds: 15m, 30m or 1h (the default)."""
    if raw is None:
        return WINDOWS_S["1h"]
    if raw not in WINDOWS_S:
        raise invalid("window", f"window is one of {', '.join(WINDOWS_S)}", f"got {raw!r}")
    return WINDOWS_S[raw]


async def job_trends(request: Request) -> Response:
    """GET /stats/trends?window=&task=&task_prefix=&queue=…: any filter of `GET /jobs`."""
    params = request.query_params
    window_s = parse_window(params.get("window"))
    answer = await trends.trends(
        state_of(request).pool,
        tenant=tenant_of(request),
        job_filter=parse_filter(params),
        window_s=window_s,
    )
    return JSONResponse(answer)


routes = [Route("/stats/trends", job_trends, methods=["GET"])]
