"""The live dashboard: pages at `/` and `/ui/…`, their assets at `/static/`, and `/stats`.

The pages hold no data, which is why auth lets them through without a key: their JS
module fetches everything from the API with the user's key (asked for after a 401, kept
in sessionStorage) and follows the SSE streams through the tokenised URLs the API hands
out (`links.events`, the list's `events`), so a key never appears in a URL. Scripts and
styles are files, never inline, as the Content-Security-Policy demands.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tidings.core.db import jobs
from tidings.core.errors import Unprocessable
from tidings.core.events import EventKind
from tidings.core.job_lookup import id_prefix_range
from tidings.core.model import (
    CANCELLABLE_STATUSES,
    RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    Status,
)
from tidings.server.auth import tenant_of
from tidings.server.mount import root_path
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
# A loader and its compiled-template cache, read-only once built: Starlette's own pattern.
# The lifecycle the page follows, from the model itself (the page holds no copy of it).
MODEL_JSON = orjson.dumps(
    {
        "statuses": list(Status),
        "kinds": list(EventKind),
        "terminal": [status for status in Status if status in TERMINAL_STATUSES],
        "cancellable": [status for status in Status if status in CANCELLABLE_STATUSES],
        "retryable": [status for status in Status if status in RETRYABLE_STATUSES],
    }
).decode()
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
# Counting stops here: the dashboard shows "10000+" rather than scan a long history.
COUNT_CAP = 10_000


def asset_version() -> str:
    """Changes whenever an asset does, so a browser never runs a stale cached script."""
    return format(max(path.stat().st_mtime_ns for path in STATIC_DIR.iterdir()), "x")


def render_page(
    request: Request, template: str, view: str, status_code: int = 200, **context: object
) -> Response:
    """A page: the scaffolding of one view, which the JS module fills in."""
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "view": view,
            "root": root_path(request.scope),  # where assets and the API are, when mounted
            "version": asset_version(),
            "model": MODEL_JSON,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


async def jobs_page(request: Request) -> Response:
    """GET /: the live jobs table, filtered and paged by the query string."""
    return render_page(request, "jobs.html", "jobs", statuses=list(Status))


async def job_page(request: Request) -> Response:
    """GET /ui/jobs/{id}: one job, its live event log, and Cancel / Retry.

    Given the first hex digits of an id instead, the page looks them up: only the page's
    script holds the API key that says whose jobs to search, so the server cannot.
    """
    raw = request.path_params["job_id"]
    try:
        job_id = str(uuid.UUID(raw))
    except ValueError:
        pass
    else:
        return render_page(request, "job.html", "job", job_id=job_id)
    try:
        id_prefix_range(raw)
    except Unprocessable:
        return render_page(request, "missing.html", "missing", status_code=404, job_id=raw)
    return render_page(request, "find.html", "find", prefix=raw.lower())


async def batches_page(request: Request) -> Response:
    """GET /ui/batches: the batches, newest first, with their progress."""
    return render_page(request, "batches.html", "batches")


async def batch_page(request: Request) -> Response:
    """GET /ui/batches/{id}: one batch's big progress bar, counts, and members, live.

    The member table's first page is read by the page's script with the same query the API
    serves (`GET /jobs?batch_id=…&status=…`): only the script holds the key that says
    whose batch it is, so the server cannot render it.
    """
    raw = request.path_params["batch_id"]
    try:
        batch_id = str(uuid.UUID(raw))
    except ValueError:
        return render_page(request, "batch_missing.html", "missing", status_code=404, batch_id=raw)
    return render_page(request, "batch.html", "batch", batch_id=batch_id, statuses=list(Status))


async def queues_page(request: Request) -> Response:
    """GET /ui/queues: depth and age per queue, live workers."""
    return render_page(request, "queues.html", "queues")


async def job_counts(request: Request) -> Response:
    """GET /stats: the caller's jobs per status, each count stopping at `COUNT_CAP`."""
    rows = await jobs.count_by_status(
        state_of(request).pool, tenant=tenant_of(request), cap=COUNT_CAP
    )
    return JSONResponse({"counts": {row["status"]: row["count"] for row in rows}, "cap": COUNT_CAP})


async def favicon(request: Request) -> Response:
    """GET /favicon.ico: the icon, for what asks for it without reading the page's link."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


routes: list[BaseRoute] = [
    Route("/", jobs_page, methods=["GET"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
    Route("/ui/jobs/{job_id}", job_page, methods=["GET"]),
    Route("/ui/queues", queues_page, methods=["GET"]),
    Route("/ui/batches", batches_page, methods=["GET"]),
    Route("/ui/batches/{batch_id}", batch_page, methods=["GET"]),
    Route("/stats", job_counts, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
]
