"""The HTTP boundary both clients share: request bodies, paths, and httpx outcomes as our errors.

`AsyncClient` and `Client` differ only in how they wait for I/O; everything that decides
what to send and what an answer means lives here, once.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from client import errors
from client.models import Job, JobPage, JobSpec

USER_AGENT = "tidings-client/0.1"

SUBMIT_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "delay_s",
        "run_at",
        "max_attempts",
        "timeout_s",
        "idempotency_key",
    }
)


def job_path(job_id: str, suffix: str = "") -> str:
    """`/jobs/{id}{suffix}`, with the id escaped: a user's typo must not become another path."""
    return f"/jobs/{quote(str(job_id), safe='')}{suffix}"


def submission(
    task: str,
    args: Mapping[str, Any] | None,
    task_args: Mapping[str, Any],
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay_s: float | None = None,
    run_at: datetime | str | None = None,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
    idempotency_key: str | None = None,
) -> JobSpec:
    """A `JobSpec` from `submit`'s arguments: `args={...}` and `**task_args` merged."""
    merged = dict(args or {})
    clash = merged.keys() & task_args.keys()
    if clash:
        raise TypeError(f"args given twice (in args= and as keywords): {', '.join(sorted(clash))}")
    merged.update(task_args)
    return JobSpec(
        task=task,
        args=merged,
        queue=queue,
        priority=priority,
        delay_s=delay_s,
        run_at=run_at,
        max_attempts=max_attempts,
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
    )


def batch_body(specs: builtins.list[JobSpec | Mapping[str, Any]]) -> dict[str, Any]:
    """The `POST /jobs/batch` body."""
    return {"jobs": [spec.to_json() if isinstance(spec, JobSpec) else dict(spec) for spec in specs]}


def list_params(
    status: str | None, task: str | None, queue: str | None, limit: int | None, cursor: str | None
) -> dict[str, str]:
    """Query parameters of `GET /jobs`, leaving out what was not asked for."""
    given = {"status": status, "task": task, "queue": queue, "limit": limit, "cursor": cursor}
    return {name: str(value) for name, value in given.items() if value is not None}


def job_page(body: Any) -> JobPage:
    return JobPage(
        jobs=[Job.from_json(item) for item in body.get("jobs", [])],
        next_cursor=body.get("next_cursor"),
    )


def raise_for_status(response: httpx.Response) -> None:
    """Raise the matching `TidingsError` for an error response (whose body has been read)."""
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise errors.error_for_status(
        response.status_code,
        body,
        retry_after=response.headers.get("retry-after"),
        fallback_text=response.text if body is None else "",
    )


def decode(response: httpx.Response) -> Any:
    """The JSON body of a successful response, or the error it stands for."""
    raise_for_status(response)
    try:
        return response.json()
    except ValueError:
        raise errors.TidingsError(
            f"the server at {response.request.url} did not answer with JSON",
            status=response.status_code,
            code="not_json",
        ) from None


def unreachable(exc: httpx.TransportError, base_url: str) -> errors.ConnectionError:
    """A transport failure as the client's `ConnectionError`, with a message a person can act on."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"timed out connecting to the tidings server at {base_url}"
    elif isinstance(exc, httpx.ConnectError):
        message = f"cannot reach the tidings server at {base_url} ({_reason(detail)})"
    elif isinstance(exc, httpx.TimeoutException):
        message = f"the tidings server at {base_url} did not answer in time"
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        message = f"the connection to the tidings server at {base_url} broke ({detail})"
    else:
        message = f"cannot talk to the tidings server at {base_url} ({detail})"
    return errors.ConnectionError(message, code="unreachable")


def _reason(detail: str) -> str:
    # "[Errno 111] Connection refused" reads better without the errno.
    if detail.startswith("[Errno") and "] " in detail:
        return detail.split("] ", 1)[1].lower()
    return detail


def check_event_stream(response: httpx.Response) -> None:
    """Refuse a 200 that is not SSE (a captive portal, a misrouted proxy): retrying won't help."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise errors.TidingsError(
            f"{response.request.url} answered {content_type or 'no content type'}, "
            "not an event stream",
            status=response.status_code,
            code="not_an_event_stream",
        )
