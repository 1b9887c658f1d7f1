"""The tidings worker: ARQ runtime, the `@task` API, the event reporter."""

from worker.job import Job
from worker.registry import task

__all__ = ["Job", "task"]
