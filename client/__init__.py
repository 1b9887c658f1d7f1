"""The tidings client side: `AsyncClient` and `Client` for Python code, and the `tidings` CLI."""

from client.api import AsyncClient
from client.errors import (
    Conflict,
    ConnectionError,
    Invalid,
    NotFound,
    TidingsError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from client.models import Event, Job, JobError, JobPage, JobSpec, Progress, TaskInfo, WorkerInfo
from client.reconnect import ReconnectPolicy
from client.sync import Client

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
