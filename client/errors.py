"""What the client raises: the server's JSON errors as exception types, an unreachable server,
and a job that `wait(..., raise_on_failure=True)` saw end without succeeding.

Every HTTP error body is `{error: {code, message, details?}}`; the status picks the class, so
callers write `except NotFound` rather than comparing numbers. Nothing here imports httpx:
the transport is wrapped at the boundary (`client.transport`).
"""

from __future__ import annotations

import builtins
from typing import Any

from tidings.client.models import Job, JobError


class TidingsError(Exception):
    """An error answer from the tidings server, or a failure to reach it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        details: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        self.retry_after_s = retry_after_s

    @property
    def field(self) -> str | None:
        """The request field the server blamed (422 details name one), if any."""
        return self._detail("field")

    @property
    def reason(self) -> str | None:
        """The server's reason for blaming `field`, if it gave one."""
        return self._detail("reason")

    def _detail(self, key: str) -> str | None:
        value = self.details.get(key) if isinstance(self.details, dict) else None
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status!r}, code={self.code!r}, {self.message!r})"


class BadRequest(TidingsError):
    """400: the request was not readable JSON, or similar."""


class Unauthorized(TidingsError):
    """401: the API key is missing or was not accepted."""


class Forbidden(TidingsError):
    """403: the key is valid but may not do this."""


class NotFound(TidingsError):
    """404: no such job (another tenant's job is a 404 too)."""


class Conflict(TidingsError):
    """409: an illegal transition (cancel a finished job) or an idempotency key reused."""


class PayloadTooLarge(TidingsError):
    """413: the body or the args are over the server's limit."""


class Invalid(TidingsError):
    """422: unknown task, args that fail the task's schema, or a bad query; see `field`."""


class TooManyRequests(TidingsError):
    """429: over the request rate, or too many open streams; `retry_after_s` says when to retry."""


class Unavailable(TidingsError):
    """503 (or a proxy's 502/504): the server is up but Postgres or Redis is not."""


class ConnectionError(TidingsError, builtins.ConnectionError):
    """The server could not be reached at all (refused, reset, timed out, DNS)."""


class JobNotSucceeded(TidingsError):
    """`wait(..., raise_on_failure=True)`: the job ended without succeeding; `job` is it."""

    def __init__(self, job: Job, message: str) -> None:
        super().__init__(message, code=f"job_{job.status}")
        self.job = job


class JobFailed(JobNotSucceeded):
    """The job failed: `error` says why (type, message, traceback), `job.attempt` after how
    many attempts."""

    def __init__(self, job: Job) -> None:
        error = f": {job.error}" if job.error is not None else ""
        super().__init__(job, f"job {job.id} ({job.task}) failed{error}")

    @property
    def error(self) -> JobError | None:
        return self.job.error


class JobCancelled(JobNotSucceeded):
    """The job was cancelled before it succeeded."""

    def __init__(self, job: Job) -> None:
        super().__init__(job, f"job {job.id} ({job.task}) was cancelled")


class UnexpectedResult(TidingsError, TypeError):
    """The job succeeded, but its result does not validate as the `result_type` asked for;
    the validation error is the `__cause__`, the job is `job`."""

    def __init__(self, job: Job, result_type: object, reason: str) -> None:
        # `list[int]` says more than its `__name__` ("list").
        generic = getattr(result_type, "__args__", None) is not None
        name = repr(result_type) if generic else getattr(result_type, "__name__", repr(result_type))
        super().__init__(
            f"the result of job {job.id} is not a valid {name}: {reason}", code="unexpected_result"
        )
        self.job = job


_BY_STATUS: dict[int, type[TidingsError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Invalid,
    429: TooManyRequests,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for_status(
    status: int, body: Any, *, retry_after: str | None = None, fallback_text: str = ""
) -> TidingsError:
    """The exception for an HTTP error response; `body` is its parsed JSON, if it had any."""
    cls = _BY_STATUS.get(status, TidingsError)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")
        message = error["message"]
        details = error.get("details")
    else:
        # Not the server's own shape: a proxy or load balancer answered.
        code = None
        text = " ".join(fallback_text.split())[:200]
        message = f"HTTP {status}" + (f": {text}" if text else "")
        details = None
    return cls(
        message,
        status=status,
        code=code if isinstance(code, str) else "http_error",
        details=details,
        retry_after_s=_seconds(retry_after),
    )


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None  # an HTTP date: rare enough to ignore
    return value if value >= 0 else None
