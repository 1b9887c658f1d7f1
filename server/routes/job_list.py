"""`GET /jobs`: the caller's jobs, filtered, newest first, in pages either way, with the
page's position in the list when asked (`position=true`)."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core.db import search
from tidings.core.job_filter import invalid, parse_filter
from tidings.core.job_pages import decode_cursor, position_of, read_page
from tidings.server.auth import ALL_JOBS, authority_of, tenant_of
from tidings.server.mount import app_url
from tidings.server.responses import JSONResponse
from tidings.server.routes.jobs import render
from tidings.server.state import state_of

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
PAGES = ("newest", "oldest")


def parse_limit(raw: str | None) -> int:
    """A page size from 1 to `MAX_LIMIT`; `DEFAULT_LIMIT` when not given."""
    if raw is None:
        return DEFAULT_LIMIT
    # isascii: str.isdigit() also accepts digits such as '²' that int() rejects.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid("limit", f"limit must be an integer from 1 to {MAX_LIMIT}", f"got {raw!r}")
    return int(raw)


def parse_flag(field: str, raw: str | None) -> bool:
    """`true` or `false` (or absent: false)."""
    if raw in (None, "false"):
        return False
    if raw == "true":
        return True
    raise invalid(field, f"{field} is true or false", f"got {raw!r}")


def parse_page(raw: str | None, cursor: str | None) -> bool:
    """Whether the oldest page is asked for (`page=oldest`); a cursor names its own page."""
    if raw is None or raw == "newest":
        return False
    if raw != "oldest":
        raise invalid("page", "page is newest or oldest", f"got {raw!r}")
    if cursor:
        raise invalid("page", "give a cursor or page=oldest, not both", "both given")
    return True


async def list_jobs(request: Request) -> Response:
    """GET /jobs?status=&task=&task_prefix=&task_contains=&queue=&queue_prefix=
    &queue_contains=&id_prefix=&created_after=&created_before=&limit=&cursor=&page=
    &position=: newest first; `next_cursor` reads older jobs, `prev_cursor` newer ones."""
    state = state_of(request)
    params = request.query_params
    tenant = tenant_of(request)
    job_filter = parse_filter(params)
    limit = parse_limit(params.get("limit"))
    raw_cursor = params.get("cursor")
    oldest = parse_page(params.get("page"), raw_cursor)
    with_position = parse_flag("position", params.get("position"))
    cursor = decode_cursor(raw_cursor) if raw_cursor else None
    resolved = await search.resolve(state.pool, tenant=tenant, job_filter=job_filter)
    page = await read_page(
        state.pool, tenant=tenant, resolved=resolved, limit=limit, cursor=cursor, oldest=oldest
    )
    events_token = state.tokens.issue(ALL_JOBS, tenant, authority_of(request.scope).key_id)
    body: dict[str, object] = {
        "events": f"{app_url(request)}/events?token={events_token}",
        "jobs": [render(request, row) for row in page.rows],
        "next_cursor": page.older,
        "prev_cursor": page.newer,
        "position": None,
    }
    if with_position:
        position = await position_of(state.pool, tenant=tenant, resolved=resolved, page=page)
        body["position"] = asdict(position)
    return JSONResponse(body)


routes = [Route("/jobs", list_jobs, methods=["GET"])]
