"""The job model: statuses, and a job row as the API shows it (`shapes.Job`)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tidings.core.shapes import Job, Progress


class Status(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Row(Protocol):
    """A database row read by column name (an asyncpg Record or a plain mapping)."""

    def __getitem__(self, key: str, /) -> Any: ...


TERMINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
# What `POST /jobs/{id}/cancel` and `POST /jobs/{id}/retry` accept.
CANCELLABLE_STATUSES = frozenset({Status.WAITING, Status.QUEUED, Status.RETRYING, Status.RUNNING})
RETRYABLE_STATUSES = frozenset({Status.FAILED, Status.CANCELLED})


def iso(value: datetime | None) -> str | None:
    """Render a timestamp as ISO 8601 in UTC, or None."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def progress_json(row: Row, now: datetime | None = None) -> Progress:
    """The progress block of a job: current, total, fraction, message and an ETA while running."""
    current, total = row["progress_current"], row["progress_total"]
    fraction = None
    if current is not None and total:
        fraction = max(0.0, min(1.0, current / total))
    eta_s = None
    started = row["started_at"]
    if fraction and row["status"] == Status.RUNNING and started is not None and fraction < 1:
        elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
        eta_s = round(elapsed * (1 - fraction) / fraction, 3)
    return {
        "current": current,
        "total": total,
        "fraction": fraction,
        "message": row["progress_message"],
        "eta_s": eta_s,
    }


def with_eta(progress: Progress, eta_s: float | None) -> Progress:
    """`progress` with a waiting job's ETA, when there is one."""
    return progress if eta_s is None else {**progress, "eta_s": eta_s}


def waiting_eta_s(run_s: float | None, ahead: int, slots: int, starts_in_s: float) -> float | None:
    """Seconds until a waiting job should finish: its wait, the queue ahead, its own run."""
    if run_s is None:
        return None
    queue_s = ahead * run_s / slots if slots else 0.0
    return round(max(starts_in_s, queue_s) + run_s, 3)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def job_json(
    row: Row,
    base_url: str = "",
    eta_s: float | None = None,
    token: str | None = None,
    waiting_reason: str | None = None,
) -> Job:
    """The public JSON of a job row."""
    job_id = str(row["id"])
    return {
        "id": job_id,
        "task": row["task"],
        "args": row["args"],
        "queue": row["queue"],
        "priority": row["priority"],
        "status": row["status"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "seq": row["seq"],
        "timeout_s": row["timeout_s"],
        "progress": with_eta(progress_json(row), eta_s),
        "result": row["result"],
        "error": row["error"],
        "worker_id": row["worker_id"],
        "cached_from": str(row["cached_from"]) if row["cached_from"] else None,
        "cancel_requested_at": iso(row["cancel_requested_at"]),
        "created_at": iso(row["created_at"]),
        "run_at": iso(row["run_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "updated_at": iso(row["updated_at"]),
        "links": {
            "self": f"{base_url}/jobs/{job_id}",
            "events": f"{base_url}/jobs/{job_id}/events" + (f"?token={token}" if token else ""),
        },
        "batch_id": _text(row["batch_id"]),
        "parent_id": _text(row["parent_id"]),
        "depends_on": [str(job) for job in row["depends_on"] or ()],
        "on_dependency_failure": row["on_dependency_failure"],
        "waiting_reason": waiting_reason,
    }
