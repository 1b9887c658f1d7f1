"""The tidings HTTP client: `AsyncClient` and `Client`. It imports nothing else of tidings."""

from tidings.client.api import AsyncClient
from tidings.client.errors import (
    Conflict,
    ConnectionError,
    Invalid,
    JobCancelled,
    JobFailed,
    JobNotSucceeded,
    NotFound,
    TidingsError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnexpectedResult,
)
from tidings.client.models import (
    Event,
    Job,
    JobError,
    JobPage,
    JobSpec,
    Progress,
    QueueInfo,
    TaskInfo,
    WorkerInfo,
)
from tidings.client.reconnect import ReconnectPolicy
from tidings.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "ConnectionError",
    "Event",
    "Invalid",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobNotSucceeded",
    "JobPage",
    "JobSpec",
    "NotFound",
    "Progress",
    "QueueInfo",
    "ReconnectPolicy",
    "TaskInfo",
    "TidingsError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResult",
    "WorkerInfo",
]
