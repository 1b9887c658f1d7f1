"""The JSON shapes of bulk actions (`POST /jobs/bulk`) and trends (`GET /stats/trends`),
as TypedDicts, beside `core/shapes.py`: the OpenAPI document is made from them."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from tidings.core.bulk import MAX_JOBS
from tidings.core.shapes import Timestamp, Uuid

Text = Annotated[str, Field(max_length=200)]
Substring = Annotated[str, Field(min_length=3, max_length=200)]


class BulkFilter(TypedDict, total=False):
    """The job list's filters (`GET /jobs`); a bulk retry takes only failed jobs."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    status: Literal["failed"]
    task: Text
    task_prefix: Text
    task_contains: Substring
    queue: Text
    queue_prefix: Text
    queue_contains: Substring
    id_prefix: str
    created_after: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    created_before: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    batch_id: Uuid
    parent_id: Uuid


class BulkByIds(TypedDict):
    """Cancel or retry the jobs with these ids (`POST /jobs/bulk`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    action: Literal["cancel", "retry"]
    ids: Annotated[list[Uuid], Field(min_length=1, max_length=MAX_JOBS)]


class BulkByFilter(TypedDict):
    """Retry the failed jobs a filter matches, the oldest first (`POST /jobs/bulk`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    action: Literal["retry"]
    filter: BulkFilter
    failed_before: NotRequired[
        Annotated[
            str | None,
            Field(description="Retry only jobs that failed before this (ISO 8601, with offset)."),
        ]
    ]


class BulkItem(TypedDict):
    id: Uuid
    outcome: Literal["cancelled", "cancel_requested", "retried", "skipped", "not_found"]
    status: Annotated[str | None, Field(description="The job's status now; null: not found.")]


class BulkAnswer(TypedDict):
    action: Literal["cancel", "retry"]
    results: list[BulkItem]
    counts: dict[str, Annotated[int, Field(ge=0)]]
    max_jobs: int
    more: NotRequired[
        Annotated[bool, Field(description="A filter matched more failed jobs than max_jobs.")]
    ]


class TrendMinute(TypedDict):
    minute: Timestamp
    succeeded: int
    failed: int
    cancelled: int


class TrendTimes(TypedDict):
    jobs: int
    succeeded: int
    failed: int
    cancelled: int
    wait_p50_s: float | None
    wait_p95_s: float | None
    run_p50_s: float | None
    run_p95_s: float | None


class TaskTrend(TrendTimes):
    task: str


class QueueTrend(TrendTimes):
    queue: str


class Trends(TypedDict):
    window_s: int
    until: Timestamp
    covered_from: Annotated[
        Timestamp, Field(description="Set when the row cap was reached: where the data starts.")
    ]
    jobs_read: int
    row_cap: int
    per_minute: list[TrendMinute]
    overall: TrendTimes
    tasks: list[TaskTrend]
    queues: list[QueueTrend]
