"""The tidings worker: ARQ runtime, the `@task` API, the event reporter."""

from tidings.worker.job import Job
from tidings.worker.registry import on_shutdown, on_startup, task
from tidings.worker.retry import PermanentError, RetryPolicy

__all__ = ["Job", "PermanentError", "RetryPolicy", "on_shutdown", "on_startup", "task"]
