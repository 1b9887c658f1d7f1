"""Jobs, events and the registry as typed values, parsed from the server's JSON.

Parsing is lenient about fields it does not know (a newer server may add some) and keeps
the JSON it came from in `raw`, so nothing the server said is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, Literal, cast

from typing_extensions import TypeVar

#: A job's status. `waiting`: its dependencies (or its children) have not finished yet.
Status = Literal["waiting", "queued", "running", "retrying", "succeeded", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = (
    "waiting",
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "cancelled",
)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_KINDS = TERMINAL_STATUSES
#: What a job does when one of its dependencies fails or is cancelled.
DependencyFailurePolicy = Literal["fail", "ignore", "continue"]

#: The type of a job's result: `Any` as the server sends it, or what `wait(...,
#: result_type=...)` validated it into.
R = TypeVar("R", default=Any)
T = TypeVar("T")
# A job's result until it has one (typed Any so that it fits whatever R is).
NO_RESULT: Any = None


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from the server, or None."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _id_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Progress:
    """How far a job is: `current` of `total`, their `fraction` (0..1), a message and an ETA."""

    current: float | None = None
    total: float | None = None
    fraction: float | None = None
    message: str | None = None
    eta_s: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        data = data or {}
        return cls(
            current=_float(data.get("current")),
            total=_float(data.get("total")),
            fraction=_float(data.get("fraction")),
            message=data.get("message"),
            eta_s=_float(data.get("eta_s")),
        )


@dataclass(frozen=True)
class JobError:
    """Why an attempt failed: the exception's type, message and formatted traceback."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> JobError | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            type=str(data.get("type", "Error")),
            message=str(data.get("message", "")),
            traceback=data.get("traceback"),
        )

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


@dataclass(frozen=True)
class Job(Generic[R]):
    """A job as `GET /jobs/{id}` shows it.

    `result` is the task's return value once the job has succeeded (else None), as JSON
    decoded it; a `Job[Model]` from `wait(..., result_type=Model)` holds it validated.
    """

    id: str
    task: str
    status: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 1
    timeout_s: float | None = None
    progress: Progress = field(default_factory=Progress)
    result: R = NO_RESULT
    error: JobError | None = None
    worker_id: str | None = None
    cached_from: str | None = None
    cancel_requested_at: datetime | None = None
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    links: dict[str, str] = field(default_factory=dict)
    waiting_reason: str | None = None
    batch_id: str | None = None
    parent_id: str | None = None
    depends_on: list[str] = field(default_factory=list)
    on_dependency_failure: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job[Any]:
        return cls(
            id=str(data["id"]),
            task=str(data["task"]),
            status=str(data["status"]),
            args=dict(data.get("args") or {}),
            queue=str(data.get("queue", "default")),
            priority=int(data.get("priority") or 0),
            attempt=int(data.get("attempt") or 0),
            max_attempts=int(data.get("max_attempts") or 1),
            timeout_s=_float(data.get("timeout_s")),
            progress=Progress.from_json(data.get("progress")),
            result=cast(Any, data.get("result")),
            error=JobError.from_json(data.get("error")),
            worker_id=data.get("worker_id"),
            cached_from=data.get("cached_from"),
            cancel_requested_at=parse_time(data.get("cancel_requested_at")),
            created_at=parse_time(data.get("created_at")),
            run_at=parse_time(data.get("run_at")),
            started_at=parse_time(data.get("started_at")),
            finished_at=parse_time(data.get("finished_at")),
            updated_at=parse_time(data.get("updated_at")),
            links=dict(data.get("links") or {}),
            waiting_reason=data.get("waiting_reason"),
            batch_id=_id_or_none(data.get("batch_id")),
            parent_id=_id_or_none(data.get("parent_id")),
            depends_on=[str(job_id) for job_id in data.get("depends_on") or []],
            on_dependency_failure=data.get("on_dependency_failure"),
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        """True once the job has succeeded, failed or been cancelled."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def with_result(self, result: T) -> Job[T]:
        """This job holding `result` in place of the result it came with."""
        return cast("Job[T]", replace(self, result=cast(Any, result)))


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: `seq` counts from 1 with no gaps; `kind` says what happened.

    Kinds: queued, started, progress, log, retrying, succeeded, failed, cancelled, requeued.
    `data` carries the kind's payload: `result` and `run_s` on succeeded, `error` on failed
    and retrying (with `retry_at`), `worker_id` on started, `reason` on requeued.
    """

    job_id: str
    seq: int
    kind: str
    status: str | None = None
    attempt: int | None = None
    current: float | None = None
    total: float | None = None
    message: str | None = None
    data: Any = None
    at: datetime | None = None
    task: str | None = None
    queue: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        attempt = data.get("attempt")
        return cls(
            job_id=str(data["job_id"]),
            seq=int(data["seq"]),
            kind=str(data["kind"]),
            status=data.get("status"),
            attempt=int(attempt) if isinstance(attempt, int) else None,
            current=_float(data.get("current")),
            total=_float(data.get("total")),
            message=data.get("message"),
            data=data.get("data"),
            at=parse_time(data.get("at")),
            task=data.get("task"),
            queue=data.get("queue"),
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled: the stream ends after one of these."""
        return self.kind in TERMINAL_KINDS

    @property
    def fraction(self) -> float | None:
        """current / total, clamped to 0..1, when both are known."""
        if self.current is None or not self.total:
            return None
        return max(0.0, min(1.0, self.current / self.total))

    @property
    def result(self) -> Any:
        """The task's return value, on a succeeded event."""
        return self.data.get("result") if isinstance(self.data, Mapping) else None

    @property
    def error(self) -> JobError | None:
        """The failure, on failed and retrying events."""
        if not isinstance(self.data, Mapping):
            return None
        return JobError.from_json(self.data.get("error"))


@dataclass(frozen=True)
class JobPage:
    """One page of `GET /jobs`, newest first; pass `next_cursor` back for the next page."""

    jobs: list[Job]
    next_cursor: str | None = None


@dataclass(frozen=True)
class TaskInfo:
    """A task some worker registered: its queue, defaults and the JSON schema of its args."""

    name: str
    queue: str
    description: str | None = None
    args_schema: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskInfo:
        return cls(
            name=str(data["name"]),
            queue=str(data.get("queue", "default")),
            description=data.get("description"),
            args_schema=dict(data.get("args_schema") or {}),
            defaults=dict(data.get("defaults") or {}),
            updated_at=parse_time(data.get("updated_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker and its last heartbeat."""

    id: str
    hostname: str | None = None
    pid: int | None = None
    queues: list[str] = field(default_factory=list)
    concurrency: int | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    running: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerInfo:
        running = data.get("running")
        return cls(
            id=str(data["id"]),
            hostname=data.get("hostname"),
            pid=data.get("pid"),
            queues=list(data.get("queues") or []),
            concurrency=data.get("concurrency"),
            started_at=parse_time(data.get("started_at")),
            heartbeat_at=parse_time(data.get("heartbeat_at")),
            running=running if isinstance(running, int) else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class QueueInfo:
    """A queue's load, counting the caller's jobs: due now, scheduled for later, running;
    how long the oldest due job has waited; and the live workers (and their slots) on it."""

    queue: str
    due: int = 0
    scheduled: int = 0
    running: int = 0
    oldest_due_s: float | None = None
    workers: int = 0
    slots: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueueInfo:
        return cls(
            queue=str(data["queue"]),
            due=int(data.get("due") or 0),
            scheduled=int(data.get("scheduled") or 0),
            running=int(data.get("running") or 0),
            oldest_due_s=_float(data.get("oldest_due_s")),
            workers=int(data.get("workers") or 0),
            slots=int(data.get("slots") or 0),
            raw=dict(data),
        )


@dataclass(frozen=True)
class JobSpec:
    """One job to submit; `submit_many` takes a list of these."""

    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    delay_s: float | None = None
    run_at: datetime | str | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    #: In `submit_batch`: a name other jobs of the same batch use in their `depends_on`.
    ref: str | None = None
    #: Job ids (or, in `submit_batch`, refs of jobs in the same batch) to finish first.
    depends_on: Sequence[str] | None = None
    on_dependency_failure: DependencyFailurePolicy | None = None

    def to_json(self) -> dict[str, Any]:
        """The `POST /jobs` body: options left as None are left to the task's defaults."""
        body: dict[str, Any] = {"task": self.task, "args": dict(self.args)}
        run_at = self.run_at
        if isinstance(run_at, datetime):
            if run_at.tzinfo is None:
                raise ValueError("run_at must be timezone-aware (the server needs an offset)")
            run_at = run_at.isoformat()
        options = {
            "queue": self.queue,
            "priority": self.priority,
            "delay_s": self.delay_s,
            "run_at": run_at,
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "idempotency_key": self.idempotency_key,
            "ref": self.ref,
            "depends_on": None if self.depends_on is None else list(self.depends_on),
            "on_dependency_failure": self.on_dependency_failure,
        }
        body.update({name: value for name, value in options.items() if value is not None})
        return body
