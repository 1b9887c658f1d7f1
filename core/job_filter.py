"""Which jobs a caller means: the filters of the job list, of bulk retry and of the trends.

One parser for the query string of `GET /jobs` and for the `filter` object of
`POST /jobs/bulk`, so a filter the dashboard shows is exactly the filter a bulk retry acts
on. Bad values are a 422 naming the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tidings.core.errors import Unprocessable
from tidings.core.job_lookup import id_prefix_range
from tidings.core.model import Status

# A substring shorter than a trigram cannot be looked up in the trigram index; it would
# read every job of the tenant.
MIN_CONTAINS_CHARS = 3
MAX_TEXT_CHARS = 200
TEXT_FIELDS = (
    "task",
    "task_prefix",
    "task_contains",
    "queue",
    "queue_prefix",
    "queue_contains",
)
TIME_FIELDS = ("created_after", "created_before")
# A batch's members, a job's children.
RELATION_FIELDS = ("batch_id", "parent_id")
FIELDS = ("status", *TEXT_FIELDS, "id_prefix", *TIME_FIELDS, *RELATION_FIELDS)


@dataclass(frozen=True)
class JobFilter:
    """The conditions a job must meet; None means "any". Names match exactly, by prefix or
    by substring (case-sensitive, as task and queue names are); `created_after` is
    inclusive and `created_before` exclusive, so adjacent ranges never share a job."""

    status: str | None = None
    task: str | None = None
    task_prefix: str | None = None
    task_contains: str | None = None
    queue: str | None = None
    queue_prefix: str | None = None
    queue_contains: str | None = None
    id_between: tuple[uuid.UUID, uuid.UUID] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    batch_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None


def invalid(field: str, message: str, reason: str) -> Unprocessable:
    """The 422 for one field of a filter."""
    return Unprocessable(message, {"field": field, "reason": reason}, code="invalid_query")


def parse_status(raw: str | None) -> str | None:
    """A status the model knows, or None."""
    if raw is None or raw in Status.__members__.values():
        return raw
    raise invalid("status", "unknown status", f"one of {', '.join(Status)}")


def parse_text(field: str, raw: str | None) -> str | None:
    """A name or part of one: not empty, not too long, no NUL (Postgres text cannot hold
    it); a substring at least `MIN_CONTAINS_CHARS` long."""
    if raw is None:
        return None
    if "\x00" in raw:
        raise invalid(
            field, f"{field} must not contain the NUL character", "Postgres text cannot hold U+0000"
        )
    if len(raw) > MAX_TEXT_CHARS:
        raise invalid(field, f"{field} is at most {MAX_TEXT_CHARS} characters", f"{len(raw)}")
    if field.endswith("_contains") and len(raw) < MIN_CONTAINS_CHARS:
        raise invalid(
            field,
            f"{field} needs at least {MIN_CONTAINS_CHARS} characters",
            f"got {raw!r}; use {field.replace('_contains', '_prefix')} for shorter text",
        )
    return raw


def parse_time(field: str, raw: str | None) -> datetime | None:
    """An ISO 8601 timestamp with its UTC offset (`Z` or `+02:00`): a time without one
    would mean the server's zone, which the caller cannot see."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(field, f"{field} is not an ISO 8601 timestamp", f"got {raw!r}") from None
    if value.tzinfo is None:
        raise invalid(
            field,
            f"{field} needs a UTC offset, such as Z or +02:00",
            f"got {raw!r}",
        )
    return value


def parse_filter(values: Mapping[str, object]) -> JobFilter:
    """The filter named by `values` (a query string, or the JSON object of a bulk request);
    each value must be a string; a filter not given means "any"."""
    given: dict[str, str | None] = {}
    for field in FIELDS:
        raw = values.get(field)
        if raw is not None and not isinstance(raw, str):
            raise invalid(field, f"{field} must be a string", f"got {type(raw).__name__}")
        given[field] = raw
    after = parse_time("created_after", given["created_after"])
    before = parse_time("created_before", given["created_before"])
    if after is not None and before is not None and after >= before:
        raise invalid(
            "created_before", "created_before must be later than created_after", "empty range"
        )
    id_prefix = given["id_prefix"]
    return JobFilter(
        status=parse_status(given["status"]),
        task=parse_text("task", given["task"]),
        task_prefix=parse_text("task_prefix", given["task_prefix"]),
        task_contains=parse_text("task_contains", given["task_contains"]),
        queue=parse_text("queue", given["queue"]),
        queue_prefix=parse_text("queue_prefix", given["queue_prefix"]),
        queue_contains=parse_text("queue_contains", given["queue_contains"]),
        id_between=id_prefix_range(id_prefix) if id_prefix is not None else None,
        created_after=after,
        created_before=before,
        batch_id=parse_id("batch_id", given["batch_id"]),
        parent_id=parse_id("parent_id", given["parent_id"]),
    )


def parse_id(field: str, raw: str | None) -> uuid.UUID | None:
    """A batch or job id, or None."""
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise invalid(field, f"{field} must be a UUID", f"got {raw[:50]!r}") from None
