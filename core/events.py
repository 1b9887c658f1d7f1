"""The event format: its kinds, its JSON shape, and the compact runs progress travels in.

One event is one JSON object (`shapes.Event`: job, seq, kind, status, attempt, progress
fields, message, data, time), made only by `make_event`. Progress and log events of one
attempt written together travel (on the events channel) and are stored as a *run*: the
fields they share once, `first_seq`, and one *note* per event, a plain array whose fields
are `NOTE_FIELDS` in that order. A task may make a hundred thousand notes, so a note is a
plain tuple (no object per event for the garbage collector to track), encoded once for
Postgres and the PUBLISH alike; `run_events` turns a run back into events.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from tidings.core.model import Row, Status, iso

if TYPE_CHECKING:
    from tidings.core.shapes import Event


class EventKind(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    LOG = "log"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REQUEUED = "requeued"


TERMINAL_KINDS = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED})

# The fields of a note, in the order a note holds them.
NOTE_FIELDS = ("kind", "current", "total", "message", "data")
# A note: (kind, current, total, message, data), as NOTE_FIELDS names them.
Note = tuple[str, float | None, float | None, str | None, dict[str, Any] | None]


def note_field(name: str) -> int:
    """The position of field `name` in a note."""
    return NOTE_FIELDS.index(name)


def make_event(
    job_id: str,
    task: str,
    queue: str,
    tenant: str,
    batch_id: str | None,
    seq: int,
    kind: EventKind,
    status: Status,
    attempt: int,
    current: float | None,
    total: float | None,
    message: str | None,
    data: Any,
    at: str | None,
) -> dict[str, Any]:
    """The public JSON of one job event, as stored, published and streamed."""
    event: Event = {
        "job_id": job_id,
        "task": task,
        "queue": queue,
        "tenant": tenant,
        "batch_id": batch_id,
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
    return cast(dict[str, Any], event)


def event_json(row: Row) -> dict[str, Any]:
    """The event of a `job_events` row joined with its job's task, queue, tenant and batch."""
    batch_id = row["job_batch"]
    return make_event(
        str(row["job_id"]),
        row["job_task"],
        row["job_queue"],
        row["job_tenant"],
        None if batch_id is None else str(batch_id),
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


def make_run(
    job_id: str,
    task: str,
    queue: str,
    tenant: str,
    batch_id: str | None,
    status: str,
    attempt: int,
    at: str | None,
    first_seq: int,
    events: Any,
) -> dict[str, Any]:
    """A run: consecutive notes of one attempt, the fields they share given once, `events`
    the [kind, current, total, message, data] items (a list, or their encoded JSON)."""
    return {
        "job_id": job_id,
        "task": task,
        "queue": queue,
        "tenant": tenant,
        "batch_id": batch_id,
        "status": status,
        "attempt": attempt,
        "at": at,
        "first_seq": first_seq,
        "events": events,
    }


def run_events(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand a run: consecutive events of one attempt written together, sent compactly.

    A run carries the fields its events share once, `first_seq`, and `events` as
    [kind, current, total, message, data] items; each becomes a `make_event` event.
    """
    job_id, task, queue, tenant = run["job_id"], run["task"], run["queue"], run["tenant"]
    batch_id = run.get("batch_id")  # absent from the runs of a worker older than batches
    status, attempt, at, first = run["status"], run["attempt"], run["at"], run["first_seq"]
    return [
        make_event(
            job_id,
            task,
            queue,
            tenant,
            batch_id,
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
