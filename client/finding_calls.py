"""What the bulk and trends methods send and how their answers are read, with no I/O (as
`client.calls`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from typing_extensions import Unpack

from tidings.client.calls import Call
from tidings.client.finding_models import BulkResult, Trends, TrendWindow
from tidings.client.job_filters import JobFilters, filter_values, timestamp


def bulk_by_ids(action: Literal["cancel", "retry"], job_ids: Iterable[str]) -> Call[BulkResult]:
    """`POST /jobs/bulk` on chosen jobs: one outcome per id, in the order given."""
    body = {"action": action, "ids": [str(job_id) for job_id in job_ids]}
    return Call("POST", "/jobs/bulk", BulkResult.from_json, json=body)


def retry_failed(
    *, failed_before: datetime | None = None, **filters: Unpack[JobFilters]
) -> Call[BulkResult]:
    """`POST /jobs/bulk` retrying the oldest failed jobs the filters match."""
    body: dict[str, Any] = {"action": "retry", "filter": filter_values(filters)}
    if failed_before is not None:
        body["failed_before"] = timestamp("failed_before", failed_before)
    return Call("POST", "/jobs/bulk", BulkResult.from_json, json=body)


def trends(window: TrendWindow, **filters: Unpack[JobFilters]) -> Call[Trends]:
    """`GET /stats/trends` over `window`, for the jobs the filters match."""
    params = {"window": window, **filter_values(filters)}
    return Call("GET", "/stats/trends", Trends.from_json, params=params)
