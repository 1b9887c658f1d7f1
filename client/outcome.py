"""What `wait` hands back for a finished job: the job, the job with its result validated into
the type asked for, or the error of a job that did not succeed. No I/O: both clients share it.

Validation uses pydantic (`TypeAdapter`), imported only when a `result_type` is given, so
the client itself does not need it installed.
"""

from __future__ import annotations

from typing import Any

from tidings.client.errors import JobCancelled, JobFailed, UnexpectedResult
from tidings.client.models import Job

# How many of pydantic's complaints an `UnexpectedResult` message quotes.
QUOTED_ERRORS = 3


def settle(job: Job[Any], *, raise_on_failure: bool, result_type: Any | None) -> Job[Any]:
    """`job` as `wait` returns it; raises for a failed or cancelled job when asked to, and
    always when a `result_type` was given (such a job has no result to validate)."""
    if raise_on_failure or result_type is not None:
        if job.status == "failed":
            raise JobFailed(job)
        if job.status == "cancelled":
            raise JobCancelled(job)
    if result_type is None:
        return job
    return job.with_result(validated(job, result_type))


def validated(job: Job[Any], result_type: Any) -> Any:
    """The job's JSON result as `result_type` (a pydantic model, a dataclass, `list[int]`…)."""
    try:
        from pydantic import TypeAdapter, ValidationError
    except ImportError:  # pragma: no cover - pydantic is there wherever tests run
        raise ImportError(
            "wait(..., result_type=...) validates with pydantic: pip install pydantic"
        ) from None
    try:
        return TypeAdapter(result_type).validate_python(job.result)
    except ValidationError as exc:
        complaints = [
            f"{'.'.join(str(part) for part in error['loc']) or 'result'}: {error['msg']}"
            for error in exc.errors()[:QUOTED_ERRORS]
        ]
        raise UnexpectedResult(job, result_type, "; ".join(complaints)) from exc
