"""Batches and their stream's events as typed values, parsed from the server's JSON.

A batch is a set of jobs submitted together (some depending on others); the server keeps
its counts per status and one gapless stream of its members' transitions. As in
`client.models`, parsing ignores fields it does not know and keeps the JSON in `raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tidings.client.models import STATUSES, Status, parse_time

#: `open` while any member may still run; `finished` once every member has ended.
BatchStatus = Literal["open", "finished"]

# The SSE event names of `GET /batches/{id}/events`.
JOB_EVENT = "job"
PROGRESS_EVENT = "progress"
FINISHED_EVENT = "batch.finished"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class BatchCounts:
    """How many of a batch's members are in each status."""

    waiting: int = 0
    queued: int = 0
    running: int = 0
    retrying: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @classmethod
    def from_json(cls, data: Any) -> BatchCounts:
        counts = data if isinstance(data, Mapping) else {}
        return cls(**{status: _int(counts.get(status)) for status in STATUSES})

    def of(self, status: Status) -> int:
        """The count of one status."""
        count: int = getattr(self, status)
        return count

    @property
    def ended(self) -> int:
        """Members that succeeded, failed or were cancelled."""
        return self.succeeded + self.failed + self.cancelled

    @property
    def open(self) -> int:
        """Members that wait, are queued, run or are about to be retried."""
        return self.waiting + self.queued + self.running + self.retrying

    @property
    def unsuccessful(self) -> int:
        """Members that failed or were cancelled."""
        return self.failed + self.cancelled

    def to_json(self) -> dict[str, int]:
        return {status: self.of(status) for status in STATUSES}


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch is: `done` members ended of `total`, and `fraction` (0..1), which
    also counts the running members' own progress."""

    done: int = 0
    total: int = 0
    fraction: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> BatchProgress:
        progress = data if isinstance(data, Mapping) else {}
        return cls(
            done=_int(progress.get("done")),
            total=_int(progress.get("total")),
            fraction=_float(progress.get("fraction")) or 0.0,
        )


@dataclass(frozen=True)
class Batch:
    """A batch as `GET /batches/{id}` shows it. `job_ids` (members in the order they were
    submitted) is filled only on the batch `submit_batch` returns."""

    id: str
    status: str = "open"
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    total: int = 0
    counts: BatchCounts = field(default_factory=BatchCounts)
    progress: BatchProgress = field(default_factory=BatchProgress)
    eta_s: float | None = None
    seq: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    job_ids: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Batch:
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or "open"),
            name=data.get("name"),
            metadata=dict(data.get("metadata") or {}),
            tenant=data.get("tenant"),
            total=_int(data.get("total")),
            counts=BatchCounts.from_json(data.get("counts")),
            progress=BatchProgress.from_json(data.get("progress")),
            eta_s=_float(data.get("eta_s")),
            seq=_int(data.get("seq")),
            created_at=parse_time(data.get("created_at")),
            started_at=parse_time(data.get("started_at")),
            finished_at=parse_time(data.get("finished_at")),
            job_ids=[str(job_id) for job_id in data.get("job_ids") or []],
            links=dict(data.get("links") or {}),
            raw=dict(data),
        )

    @property
    def finished(self) -> bool:
        """True once every member has succeeded, failed or been cancelled."""
        return self.status == "finished"


@dataclass(frozen=True)
class BatchPage:
    """One page of `GET /batches`, newest first; pass `next_cursor` back for the next page."""

    batches: list[Batch]
    next_cursor: str | None = None


@dataclass(frozen=True)
class BatchChange:
    """What `cancel_batch` and `retry_batch` did: the batch afterwards, and how many of its
    members they cancelled or retried."""

    batch: Batch
    count: int


@dataclass(frozen=True)
class BatchJobEvent:
    """One member's transition: `seq` counts the batch's transitions from 1 with no gaps;
    `kind` is the job's event kind (queued, waiting, started, retrying, succeeded, …)."""

    seq: int
    batch_id: str
    job_id: str
    kind: str
    status: str | None = None
    task: str | None = None
    at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchJobEvent:
        return cls(
            seq=int(data["seq"]),
            batch_id=str(data["batch_id"]),
            job_id=str(data["job_id"]),
            kind=str(data["kind"]),
            status=data.get("status"),
            task=data.get("task"),
            at=parse_time(data.get("at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class BatchProgressEvent:
    """The batch's counts and progress as of transition `seq` (sent at most a few times a
    second, so it is a snapshot, not a transition: it has no seq of its own)."""

    batch_id: str
    seq: int
    counts: BatchCounts
    total: int
    progress: BatchProgress
    eta_s: float | None = None
    at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchProgressEvent:
        return cls(
            batch_id=str(data["batch_id"]),
            seq=_int(data.get("seq")),
            counts=BatchCounts.from_json(data.get("counts")),
            total=_int(data.get("total")),
            progress=BatchProgress.from_json(data.get("progress")),
            eta_s=_float(data.get("eta_s")),
            at=parse_time(data.get("at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class BatchFinished:
    """The last event of a batch's stream: every member has ended."""

    seq: int
    batch_id: str
    counts: BatchCounts
    total: int
    finished_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchFinished:
        return cls(
            seq=_int(data.get("seq")),
            batch_id=str(data["batch_id"]),
            counts=BatchCounts.from_json(data.get("counts")),
            total=_int(data.get("total")),
            finished_at=parse_time(data.get("finished_at")),
            raw=dict(data),
        )

    @classmethod
    def of(cls, batch: Batch) -> BatchFinished:
        """The end of the stream, as a finished batch's own JSON says it."""
        raw = {
            "seq": batch.seq,
            "batch_id": batch.id,
            "counts": batch.counts.to_json(),
            "total": batch.total,
            "finished_at": batch.raw.get("finished_at"),
        }
        return cls(
            seq=batch.seq,
            batch_id=batch.id,
            counts=batch.counts,
            total=batch.total,
            finished_at=batch.finished_at,
            raw=raw,
        )


#: What `stream_batch` yields.
BatchEvent = BatchJobEvent | BatchProgressEvent | BatchFinished


def parse_batch_event(name: str, data: Mapping[str, Any]) -> BatchEvent | None:
    """The typed event for an SSE event `name` and its data; None for a name this client
    does not know (a newer server's), which is skipped."""
    if name == JOB_EVENT:
        return BatchJobEvent.from_json(data)
    if name == PROGRESS_EVENT:
        return BatchProgressEvent.from_json(data)
    if name == FINISHED_EVENT:
        return BatchFinished.from_json(data)
    return None
