"""The JSON shapes of the HTTP API, each written once, as a TypedDict.

Three things read them: mypy checks that the code building a body builds this shape
(`job_json` returns a `Job`), the server compiles the request shapes' JSON schemas into
its validators, and `server/openapi.py` makes the OpenAPI document from all of them
(pydantic's `TypeAdapter`), which schemathesis then holds every response to.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import ConfigDict, Field, WithJsonSchema
from typing_extensions import TypedDict

from tidings.core.events import EventKind
from tidings.core.model import Status
from tidings.core.settings import QUEUE_PATTERN

MAX_BATCH = 10_000

Timestamp = Annotated[
    str | None, WithJsonSchema({"type": ["string", "null"], "format": "date-time"})
]
Uuid = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]
# Task and queue names and idempotency keys (body field or header) are at most this long.
MAX_NAME = 200
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
QueueName = Annotated[str, Field(pattern=QUEUE_PATTERN)]


# --- requests -------------------------------------------------------------------------------


class SubmitRequest(TypedDict):
    """One job to submit (`POST /jobs`, and each item of `POST /jobs/batch`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    task: Name
    args: NotRequired[dict[str, Any]]
    queue: NotRequired[QueueName]
    priority: NotRequired[Annotated[int, Field(ge=-10, le=10)]]
    delay_s: NotRequired[Annotated[float, Field(ge=0, le=31_536_000)]]
    run_at: NotRequired[Annotated[str, Field(min_length=1, max_length=64)]]
    max_attempts: NotRequired[Annotated[int, Field(ge=1, le=100)]]
    timeout_s: NotRequired[Annotated[float, Field(gt=0, le=604_800)]]
    idempotency_key: NotRequired[Name]
    cache: NotRequired[bool]


class BatchRequest(TypedDict):
    """Many jobs in one transaction (`POST /jobs/batch`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    jobs: Annotated[list[SubmitRequest], Field(min_length=1, max_length=MAX_BATCH)]


# --- responses ------------------------------------------------------------------------------


class ErrorDetail(TypedDict):
    code: str
    message: str
    details: NotRequired[Any]


class ErrorBody(TypedDict):
    """Every error answer: a code, a message, and what it concerns."""

    error: ErrorDetail


class Progress(TypedDict):
    current: float | None
    total: float | None
    fraction: float | None
    message: str | None
    eta_s: float | None


class JobError(TypedDict):
    type: str
    message: str
    traceback: str | None


class JobLinks(TypedDict):
    self: str
    events: str


class Job(TypedDict):
    """A job as the API shows it."""

    id: Uuid
    task: str
    args: dict[str, Any]
    queue: str
    priority: int
    status: Status
    attempt: int
    max_attempts: int
    seq: Annotated[int, Field(description="The job's last event seq.")]
    timeout_s: float
    progress: Progress
    result: Any
    error: JobError | None
    worker_id: str | None
    cached_from: str | None
    cancel_requested_at: Timestamp
    created_at: Timestamp
    run_at: Timestamp
    started_at: Timestamp
    finished_at: Timestamp
    updated_at: Timestamp
    links: JobLinks
    waiting_reason: Annotated[
        str | None,
        Field(
            description="Why a waiting job cannot start (no live worker has its task), "
            "in GET /jobs/{id}; null otherwise."
        ),
    ]


class Event(TypedDict):
    """One job event, as stored, published and streamed (`id` = seq, `event` = kind)."""

    job_id: Uuid
    task: str
    queue: str
    tenant: str
    seq: Annotated[int, Field(ge=1)]
    kind: EventKind
    status: Status
    attempt: int
    current: float | None
    total: float | None
    message: str | None
    data: Any
    at: Timestamp


class JobPage(TypedDict):
    jobs: list[Job]
    next_cursor: str | None
    events: Annotated[str, Field(description="The tenant's /events, with a token.")]


class BatchCreated(TypedDict):
    ids: list[str]
    count: int


class History(TypedDict):
    """A page of a job's events, in seq order, with the cursors of its neighbours."""

    events: list[Event]
    next_after: Annotated[
        int | None,
        Field(description="Pass as `after` for the next page; null: no later event yet."),
    ]
    previous_before: Annotated[
        int | None,
        Field(description="Pass as `before` for the page before; null: this is the first."),
    ]


class Stats(TypedDict):
    counts: dict[Status, Annotated[int, Field(ge=0)]]
    cap: Annotated[int, Field(description="A count equal to the cap means at least that many.")]


class TaskInfo(TypedDict):
    name: str
    queue: str
    description: str
    args_schema: dict[str, Any]
    defaults: dict[str, Any]
    updated_at: Timestamp


class TaskList(TypedDict):
    tasks: list[TaskInfo]


class WorkerInfo(TypedDict):
    """A worker; `hostname` and `pid` are for the operator only (null for a tenant)."""

    id: str
    hostname: str | None
    pid: int | None
    queues: list[str]
    concurrency: int
    started_at: Timestamp
    heartbeat_at: Timestamp
    running: int


class WorkerList(TypedDict):
    workers: list[WorkerInfo]


class QueueInfo(TypedDict):
    queue: str
    due: int
    scheduled: int
    running: int
    oldest_due_s: float | None
    workers: int
    slots: int


class QueueList(TypedDict):
    queues: list[QueueInfo]


class Health(TypedDict):
    status: str
    checks: NotRequired[dict[str, str]]
