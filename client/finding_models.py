"""The answers of bulk actions (`POST /jobs/bulk`) and of trends (`GET /stats/trends`) as
typed values. As in `client.models`, parsing ignores fields it does not know and keeps the
JSON in `raw`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tidings.client.models import parse_time

#: What a bulk action did to one job. `cancelled`: it was waiting; `cancel_requested`: it
#: runs and its worker has been told; `retried`: a new attempt is queued; `skipped`: its
#: status does not allow the action; `not_found`: no job of the caller's has this id.
BulkOutcome = Literal["cancelled", "cancel_requested", "retried", "skipped", "not_found"]
#: How far back `trends` looks.
TrendWindow = Literal["15m", "30m", "1h"]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class BulkItem:
    """One job of a bulk action: what happened to it, and its status now (None: not found)."""

    id: str
    outcome: str
    status: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BulkItem:
        status = data.get("status")
        return cls(
            id=str(data["id"]),
            outcome=str(data["outcome"]),
            status=None if status is None else str(status),
        )


@dataclass(frozen=True)
class BulkResult:
    """The answer to a bulk cancel or retry: one item per job, in the order acted on, and how
    many had each outcome. `more` (retry by filter only, else None) says the filter matched
    more failed jobs than `max_jobs`: call again for the next ones."""

    action: str
    results: list[BulkItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    max_jobs: int = 0
    more: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BulkResult:
        more = data.get("more")
        counts = data.get("counts") or {}
        return cls(
            action=str(data["action"]),
            results=[BulkItem.from_json(item) for item in data.get("results") or []],
            counts={str(outcome): _int(count) for outcome, count in counts.items()},
            max_jobs=_int(data.get("max_jobs")),
            more=more if isinstance(more, bool) else None,
            raw=dict(data),
        )

    def ids(self, outcome: BulkOutcome) -> list[str]:
        """The ids of the jobs that had `outcome`, in the answer's order."""
        return [item.id for item in self.results if item.outcome == outcome]


@dataclass(frozen=True)
class TrendMinute:
    """The jobs that finished in one minute of the window, by outcome."""

    minute: datetime | None
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrendMinute:
        return cls(
            minute=parse_time(data.get("minute")),
            succeeded=_int(data.get("succeeded")),
            failed=_int(data.get("failed")),
            cancelled=_int(data.get("cancelled")),
        )


def _times(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `TrendTimes` and its per-task and per-queue forms share."""
    return {
        "jobs": _int(data.get("jobs")),
        "succeeded": _int(data.get("succeeded")),
        "failed": _int(data.get("failed")),
        "cancelled": _int(data.get("cancelled")),
        "wait_p50_s": _float(data.get("wait_p50_s")),
        "wait_p95_s": _float(data.get("wait_p95_s")),
        "run_p50_s": _float(data.get("run_p50_s")),
        "run_p95_s": _float(data.get("run_p95_s")),
    }


@dataclass(frozen=True)
class TrendTimes:
    """Finished jobs by outcome, and the median and 95th percentile of how long they waited
    once due and how long they ran (None when no job finished)."""

    jobs: int
    succeeded: int
    failed: int
    cancelled: int
    wait_p50_s: float | None
    wait_p95_s: float | None
    run_p50_s: float | None
    run_p95_s: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TrendTimes:
        return cls(**_times(data or {}))


@dataclass(frozen=True)
class TaskTrend(TrendTimes):
    """`TrendTimes` of one task's jobs."""

    task: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TaskTrend:
        data = data or {}
        return cls(**_times(data), task=str(data.get("task", "")))


@dataclass(frozen=True)
class QueueTrend(TrendTimes):
    """`TrendTimes` of one queue's jobs."""

    queue: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> QueueTrend:
        data = data or {}
        return cls(**_times(data), queue=str(data.get("queue", "")))


@dataclass(frozen=True)
class Trends:
    """The caller's jobs that finished in the last `window_s` seconds (up to `until`): each
    minute's counts (oldest first), the totals and times `overall`, and per task and per
    queue (the busiest 20 of each).

    The server reads at most `row_cap` jobs; when it reached the cap, `covered_from` says
    where the data starts (later than the window's start), else it is None.
    """

    window_s: int
    until: datetime | None
    overall: TrendTimes
    per_minute: list[TrendMinute] = field(default_factory=list)
    tasks: list[TaskTrend] = field(default_factory=list)
    queues: list[QueueTrend] = field(default_factory=list)
    covered_from: datetime | None = None
    jobs_read: int = 0
    row_cap: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trends:
        return cls(
            window_s=_int(data.get("window_s")),
            until=parse_time(data.get("until")),
            overall=TrendTimes.from_json(data.get("overall")),
            per_minute=[TrendMinute.from_json(item) for item in data.get("per_minute") or []],
            tasks=[TaskTrend.from_json(item) for item in data.get("tasks") or []],
            queues=[QueueTrend.from_json(item) for item in data.get("queues") or []],
            covered_from=parse_time(data.get("covered_from")),
            jobs_read=_int(data.get("jobs_read")),
            row_cap=_int(data.get("row_cap")),
            raw=dict(data),
        )

    def task(self, name: str) -> TaskTrend | None:
        """The trend of the task called `name`, if it is among `tasks`."""
        return next((trend for trend in self.tasks if trend.task == name), None)

    def queue(self, name: str) -> QueueTrend | None:
        """The trend of the queue called `name`, if it is among `queues`."""
        return next((trend for trend in self.queues if trend.queue == name), None)
