"""The tidings worker: ARQ runtime, the `@task` API, the event reporter."""

from worker.job import Job
from worker.registry import on_shutdown, on_startup, task
from worker.retry import PermanentError, RetryPolicy

__all__ = ["Job", "PermanentError", "RetryPolicy", "on_shutdown", "on_startup", "task"]
