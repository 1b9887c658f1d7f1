"""`/openapi.json`: the API's own description."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import tasks
from tidings.server.openapi import document
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of


async def openapi(request: Request) -> Response:
    """GET /openapi.json."""
    rows = await tasks.list_tasks(state_of(request).pool)
    return JSONResponse(document([row["name"] for row in rows]))


routes = [Route("/openapi.json", openapi, methods=["GET"])]
