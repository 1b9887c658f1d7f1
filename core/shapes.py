"""The JSON shapes of the HTTP API, each written once, as a TypedDict.

Three things read them: mypy checks that the code building a body builds this shape
(`job_json` returns a `Job`), the server compiles the request shapes' JSON schemas into
its validators, and `server/openapi.py` makes the OpenAPI document from all of them
(pydantic's `TypeAdapter`), which schemathesis then holds every response to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

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
# What a waiting job does when a dependency ends without success: fail too (`fail`), drop
# the edge (`ignore`), or count it as ended and run (`continue`).
DependencyPolicy = Literal["fail", "ignore", "continue"]


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
    depends_on: NotRequired[
        Annotated[
            list[Name],
            Field(
                max_length=MAX_BATCH,
                description="Jobs this one waits for: their ids, or in a batch the `ref` of "
                "another of its jobs.",
            ),
        ]
    ]
    on_dependency_failure: NotRequired[DependencyPolicy]
    ref: NotRequired[
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_NAME,
                description="A name for this job that other jobs of the same batch can depend on.",
            ),
        ]
    ]
    concurrency_key: NotRequired[
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_NAME,
                description="This job's concurrency key, instead of the one its task computes "
                "from the args (scoped to the caller's tenant).",
            ),
        ]
    ]
    max_per_key: NotRequired[
        Annotated[
            int,
            Field(ge=1, le=10_000, description="How many jobs with the key may run at once."),
        ]
    ]


class BatchRequest(TypedDict):
    """Many jobs in one transaction (`POST /jobs/batch`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    jobs: Annotated[list[SubmitRequest], Field(min_length=1, max_length=MAX_BATCH)]


class NewBatchRequest(TypedDict):
    """A batch: jobs followed together (`POST /batches`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    jobs: Annotated[list[SubmitRequest], Field(min_length=1, max_length=MAX_BATCH)]
    name: NotRequired[Name | None]
    metadata: NotRequired[dict[str, Any] | None]


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
    batch_id: Uuid | None
    parent_id: Annotated[Uuid | None, Field(description="The job that spawned this one.")]
    depends_on: list[Uuid]
    on_dependency_failure: DependencyPolicy
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
    batch_id: Uuid | None
    seq: Annotated[int, Field(ge=1)]
    kind: EventKind
    status: Status
    attempt: int
    current: float | None
    total: float | None
    message: str | None
    data: Any
    at: Timestamp


class JobPosition(TypedDict):
    """Where a page of `GET /jobs?position=true` sits in the whole list."""

    first: Annotated[int | None, Field(description="1-based; null past `cap` newer jobs.")]
    last: int | None
    total: Annotated[int | None, Field(ge=0, description="null: counting took too long.")]
    total_exact: Annotated[bool, Field(description="False: the count stopped at `cap`.")]
    cap: int


class JobPage(TypedDict):
    jobs: list[Job]
    next_cursor: Annotated[str | None, Field(description="Reads the older jobs.")]
    prev_cursor: Annotated[str | None, Field(description="Reads the newer jobs.")]
    position: Annotated[JobPosition | None, Field(description="With `position=true`.")]
    events: Annotated[str, Field(description="The tenant's /events, with a token.")]


class BatchCreated(TypedDict):
    ids: list[str]
    count: int


Count = Annotated[int, Field(ge=0)]


class BatchCounts(TypedDict):
    """Members per status (every status of `Status`)."""

    waiting: Count
    queued: Count
    running: Count
    retrying: Count
    succeeded: Count
    failed: Count
    cancelled: Count


class BatchProgress(TypedDict):
    done: Annotated[int, Field(description="Members that ended.")]
    total: int
    fraction: Annotated[
        float,
        Field(description="Ended members plus running members' progress, over the total."),
    ]


class BatchState(TypedDict):
    """A batch: its members per status, aggregate progress and ETA."""

    id: Uuid
    name: str | None
    metadata: dict[str, Any] | None
    tenant: str
    status: Literal["open", "finished"]
    total: int
    counts: BatchCounts
    progress: BatchProgress
    eta_s: float | None
    seq: Annotated[int, Field(description="The batch stream's last seq.")]
    created_at: Timestamp
    started_at: Timestamp
    finished_at: Timestamp


class Batch(BatchState):
    """A batch as the API shows it, with its links (the stream's carries a token)."""

    links: JobLinks


class NewBatch(Batch):
    job_ids: list[Uuid]


class BatchPage(TypedDict):
    batches: list[Batch]
    next_cursor: str | None


class BatchAction(TypedDict):
    batch: Batch
    cancelled: NotRequired[int]
    retried: NotRequired[int]


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


class KeyState(TypedDict):
    """A concurrency key with jobs running or waiting."""

    key: str
    running: int
    waiting: int
    max_per_key: int | None


class RateState(TypedDict):
    """A rate limit's bucket, as its waiting jobs see it."""

    key: str
    tokens: Annotated[float, Field(description="Tokens in the bucket now (a start takes one).")]
    burst: int
    per_s: Annotated[float, Field(description="Tokens added per second.")]
    waiting: int
    limited: Annotated[int, Field(description="Claims the bucket has refused.")]


class QueueInfo(TypedDict):
    queue: str
    due: int
    scheduled: int
    running: int
    oldest_due_s: float | None
    workers: int
    slots: int
    concurrency_keys: Annotated[
        list[KeyState], Field(description="The caller's keys with jobs running or waiting.")
    ]
    rate_limits: Annotated[
        list[RateState], Field(description="The rate buckets its waiting jobs draw on.")
    ]


class QueueList(TypedDict):
    queues: list[QueueInfo]


class Health(TypedDict):
    status: str
    checks: NotRequired[dict[str, str]]
