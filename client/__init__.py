"""The tidings HTTP client: `AsyncClient` and `Client`. It imports nothing else of tidings."""

from tidings.client.api import AsyncClient
from tidings.client.errors import (
    Conflict,
    ConnectionError,
    Invalid,
    NotFound,
    TidingsError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from tidings.client.models import (
    Event,
    Job,
    JobError,
    JobPage,
    JobSpec,
    Progress,
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
    "JobError",
    "JobPage",
    "JobSpec",
    "NotFound",
    "Progress",
    "ReconnectPolicy",
    "TaskInfo",
    "TidingsError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "WorkerInfo",
]
