"""Which jobs a call means: the job list's filters, written once for `list`, `iter_jobs`,
`retry_failed` and `trends` of both clients (they take them as `**filters`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from typing_extensions import TypedDict


class JobFilters(TypedDict, total=False):
    """The filters of `GET /jobs`; one left out (or None) means "any".

    Task and queue names match exactly (`task`), by prefix (`task_prefix`) or by substring
    (`task_contains`, at least 3 characters), case-sensitively. `created_after` is
    inclusive and `created_before` exclusive; both must be timezone-aware: a naive datetime
    is a `ValueError`, since the server would have to guess its zone. `batch_id` keeps a
    batch's members, `parent_id` a job's children.
    """

    status: str | None
    task: str | None
    task_prefix: str | None
    task_contains: str | None
    queue: str | None
    queue_prefix: str | None
    queue_contains: str | None
    created_after: datetime | None
    created_before: datetime | None
    batch_id: str | None
    parent_id: str | None


def filter_values(filters: Mapping[str, object]) -> dict[str, str]:
    """The filters as the server reads them (query parameters, or a bulk request's `filter`),
    leaving out those not given.

    `**filters` takes any keyword at run time, so an unknown name is refused here as a
    misspelt keyword argument would be: ignored, it would widen the list or the retry.
    """
    unknown = sorted(set(filters) - JobFilters.__optional_keys__)
    if unknown:
        raise TypeError(f"unknown job filter(s): {', '.join(unknown)}")
    return {name: _text(name, value) for name, value in filters.items() if value is not None}


def timestamp(name: str, value: datetime) -> str:
    """`value` in ISO 8601 with its UTC offset; a naive datetime is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (the server needs an offset)")
    return value.isoformat()


def _text(name: str, value: object) -> str:
    return timestamp(name, value) if isinstance(value, datetime) else str(value)
