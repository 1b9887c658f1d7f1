"""The job model: statuses, event kinds, and the public JSON shape of jobs and events."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventKind(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    LOG = "log"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REQUEUED = "requeued"


class Row(Protocol):
    """A database row read by column name (an asyncpg Record or a plain mapping)."""

    def __getitem__(self, key: str, /) -> Any: ...


TERMINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
TERMINAL_KINDS = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED})


def iso(value: datetime | None) -> str | None:
    """Render a timestamp as ISO 8601 in UTC, or None."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def progress_json(row: Row, now: datetime | None = None) -> dict[str, Any]:
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


def waiting_eta_s(run_s: float | None, ahead: int, slots: int, starts_in_s: float) -> float | None:
    """Seconds until a waiting job should finish: its wait, the queue ahead, its own run."""
    if run_s is None:
        return None
    queue_s = ahead * run_s / slots if slots else 0.0
    return round(max(starts_in_s, queue_s) + run_s, 3)


def job_json(
    row: Row, base_url: str = "", eta_s: float | None = None, token: str | None = None
) -> dict[str, Any]:
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
        "progress": progress_json(row) | ({"eta_s": eta_s} if eta_s is not None else {}),
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
    }


def make_event(
    job_id: str,
    task: str,
    queue: str,
    tenant: str,
    seq: int,
    kind: str,
    status: str,
    attempt: int,
    current: float | None,
    total: float | None,
    message: str | None,
    data: Any,
    at: str | None,
) -> dict[str, Any]:
    """The public JSON of one job event, as stored, published and streamed."""
    return {
        "job_id": job_id,
        "task": task,
        "queue": queue,
        "tenant": tenant,
        "seq": seq,
        "kind": kind,
        "status": status,
        "attempt": attempt,
        "current": current,
        "total": total,
        "message": message,
        "data": data,
        "at": at,
    }


def event_json(row: Row) -> dict[str, Any]:
    """The event of a `job_events` row joined with its job's task, queue and tenant."""
    return make_event(
        str(row["job_id"]),
        row["job_task"],
        row["job_queue"],
        row["job_tenant"],
        row["seq"],
        row["kind"],
        row["status"],
        row["attempt"],
        row["progress_current"],
        row["progress_total"],
        row["message"],
        row["data"],
        iso(row["at"]),
    )


def run_events(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand a run: consecutive events of one attempt written together, sent compactly.

    A run carries the fields its events share once, `first_seq`, and `events` as
    [kind, current, total, message, data] items; each becomes a `make_event` event.
    """
    job_id, task, queue, tenant = run["job_id"], run["task"], run["queue"], run["tenant"]
    status, attempt, at, first = run["status"], run["attempt"], run["at"], run["first_seq"]
    return [
        make_event(
            job_id,
            task,
            queue,
            tenant,
            first + offset,
            kind,
            status,
            attempt,
            current,
            total,
            message,
            data,
            at,
        )
        for offset, (kind, current, total, message, data) in enumerate(run["events"])
    ]
