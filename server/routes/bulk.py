"""`POST /jobs/bulk`: cancel or retry chosen jobs, or retry every failed job of a filter.

`{"action": "cancel" | "retry", "ids": [...]}` acts on up to `MAX_JOBS` ids;
`{"action": "retry", "filter": {...}, "failed_before": "..."}` retries the oldest
`MAX_JOBS` failed jobs the filter (the job list's) matches, and says whether more do.
The answer has one outcome per job. Only the caller's own jobs are touched: another
tenant's id is `not_found`, as `GET /jobs/{id}` would say.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.core import bulk
from tidings.core.errors import Unprocessable
from tidings.core.job_filter import FIELDS, parse_filter, parse_time
from tidings.core.model import Status
from tidings.server.auth import tenant_of
from tidings.server.body import read_json_object
from tidings.server.responses import JSONResponse
from tidings.server.state import state_of

# The fields of each form of request (a field of the other form is a mistake, not ignored).
BY_IDS = frozenset({"action", "ids"})
BY_FILTER = frozenset({"action", "filter", "failed_before"})


def _refuse(field: str, message: str, reason: str) -> Unprocessable:
    return Unprocessable(message, {"field": field, "reason": reason}, code="invalid_bulk")


def parse_action(raw: Any) -> bulk.Action:
    """`cancel` or `retry`."""
    if raw in bulk.Action.__members__.values():
        return bulk.Action(raw)
    raise _refuse("action", "action is cancel or retry", f"got {raw!r}")


def parse_ids(raw: Any) -> list[uuid.UUID]:
    """A list of 1 to `MAX_JOBS` job ids."""
    if not isinstance(raw, list) or not raw:
        raise _refuse("ids", "ids is a non-empty list of job ids", f"got {type(raw).__name__}")
    if len(raw) > bulk.MAX_JOBS:
        raise _refuse("ids", f"at most {bulk.MAX_JOBS} ids in one request", f"got {len(raw)}")
    ids = []
    for index, value in enumerate(raw):
        try:
            ids.append(uuid.UUID(value))
        except (TypeError, ValueError, AttributeError):
            raise _refuse(f"ids[{index}]", "not a job id", f"got {str(value)[:100]!r}") from None
    return ids


async def bulk_action(request: Request) -> Response:
    """POST /jobs/bulk: one outcome per job, and how many had each outcome."""
    state = state_of(request)
    body = await read_json_object(request, state.settings.max_body_bytes)
    tenant = tenant_of(request)
    action = parse_action(body.get("action"))
    backends = bulk.Backends(state.pool, state.redis, state.names)
    more: bool | None = None
    if ("ids" in body) == ("filter" in body):
        raise _refuse("ids", "give either ids or a filter", "both or neither given")
    allowed = BY_IDS if "ids" in body else BY_FILTER
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _refuse(unknown[0], "not a field of this request", f"one of {sorted(allowed)}")
    if "ids" in body:
        ids = parse_ids(body["ids"])
    else:
        ids, more = await _failed_of_filter(backends, tenant, action, body)
    if action is bulk.Action.CANCEL:
        outcomes = await bulk.cancel(backends, tenant=tenant, job_ids=ids)
    else:
        outcomes = await bulk.retry(backends, tenant=tenant, job_ids=ids)
    answer: dict[str, Any] = {
        "action": action,
        "results": [
            {"id": str(item.id), "outcome": item.outcome, "status": item.status}
            for item in outcomes
        ],
        "counts": dict(Counter(item.outcome for item in outcomes)),
        "max_jobs": bulk.MAX_JOBS,
    }
    if more is not None:
        answer["more"] = more
    return JSONResponse(answer)


async def _failed_of_filter(
    backends: bulk.Backends, tenant: str, action: bulk.Action, body: dict[str, Any]
) -> tuple[list[uuid.UUID], bool]:
    if action is not bulk.Action.RETRY:
        raise _refuse("filter", "only retry takes a filter", "cancel takes ids")
    raw_filter = body["filter"]
    if not isinstance(raw_filter, dict):
        raise _refuse("filter", "filter is an object", f"got {type(raw_filter).__name__}")
    # A misspelt filter must not widen a bulk retry to every failed job.
    unknown = sorted(set(raw_filter) - set(FIELDS))
    if unknown:
        raise _refuse(f"filter.{unknown[0]}", "not a filter of the job list", f"one of {FIELDS}")
    job_filter = parse_filter(raw_filter)
    if job_filter.status not in (None, Status.FAILED):
        raise _refuse(
            "filter.status", "retry by filter retries failed jobs", f"got {job_filter.status!r}"
        )
    failed_before = body.get("failed_before")
    if failed_before is not None and not isinstance(failed_before, str):
        raise _refuse("failed_before", "failed_before is an ISO 8601 timestamp", "not a string")
    return await bulk.failed_matching(
        backends,
        tenant=tenant,
        job_filter=job_filter,
        failed_before=parse_time("failed_before", failed_before),
    )


routes = [Route("/jobs/bulk", bulk_action, methods=["POST"])]
