"""`/openapi.json` and `/docs`: the API's own description, and a page to read it in.

The page is Swagger UI (5.x, which reads OpenAPI 3.1) from the `swagger-ui-py` package,
served from this server (no CDN): its script and styles are files, and so is the one that
starts it, as the Content-Security-Policy demands.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tidings.core.db import tasks
from tidings.server.dashboard import render_page
from tidings.server.mount import root_path
from tidings.server.openapi import document
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of


async def openapi(request: Request) -> Response:
    """GET /openapi.json; mounted in a host app, its server is the mount point."""
    rows = await tasks.list_tasks(state_of(request).pool)
    described = document([row["name"] for row in rows])
    root = root_path(request.scope)
    if root:  # without `servers`, clients (Swagger UI's "Try it out") call the host's root
        described["servers"] = [{"url": root}]
    return JSONResponse(described)


async def docs_page(request: Request) -> Response:
    """GET /docs: the OpenAPI document in Swagger UI."""
    return render_page(request, "docs.html", "docs")


# Swagger UI's own files, as the package ships them.
SWAGGER_UI_DIR = str(files("swagger_ui") / "static")

routes: list[BaseRoute] = [
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
    Mount("/docs/assets", app=StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets"),
]
