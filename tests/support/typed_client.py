"""A user's script written against the typed client, as a reader of the README would write it.

tests/integration/test_client.py type-checks it with `mypy --strict` (with only
`tidings.client` on the path) and runs both functions against a live server; the
`assert_type` lines are checked by mypy and cost nothing at run time.
"""

from __future__ import annotations

from typing import Any, assert_type

from pydantic import BaseModel

from tidings.client import (
    AsyncClient,
    Batch,
    BatchFinished,
    BatchJobEvent,
    BatchProgressEvent,
    Client,
    Job,
    JobError,
    JobFailed,
    JobSpec,
    QueueInfo,
    Status,
    UnexpectedResult,
    WorkerInfo,
)


class Steps(BaseModel):
    """What the example task `sleep_steps` returns."""

    steps: int


def report(url: str) -> list[str]:
    """Run a job to a typed result, watch one fail, and read the registry; blocking."""
    lines: list[str] = []
    with Client(url, timeout_s=10) as client:
        job = client.submit("sleep_steps", steps=2, args={"delay_s": 0.001})
        done = client.wait(job.id, timeout=10, result_type=Steps)
        assert_type(done, Job[Steps])
        steps: int = done.result.steps
        lines.append(f"{done.status} after {steps} steps")

        plain = client.wait(job.id, timeout=10)
        assert_type(plain.result, Any)

        doomed = client.submit("fail", message="out of paper")
        try:
            client.wait(doomed.id, timeout=10, raise_on_failure=True)
        except JobFailed as failed:
            error: JobError | None = failed.error
            lines.append(f"failed: {error}")

        try:
            client.wait(job.id, result_type=list[int])
        except UnexpectedResult as wrong:
            lines.append(f"not a list of int: job {wrong.job.id == job.id}")

        workers: list[WorkerInfo] = client.workers()
        running: int | None = workers[0].running
        queues: list[QueueInfo] = client.queues()
        lines.append(f"{len(workers)} worker(s), {running} running, {len(queues)} queue(s)")
    return lines


async def report_async(url: str) -> int:
    """The same typed result through `AsyncClient`."""
    async with AsyncClient(url, timeout_s=10) as client:
        job = await client.submit("sleep_steps", steps=3, args={"delay_s": 0.001})
        done = await client.wait(job.id, timeout=10, result_type=Steps)
        assert_type(done.result, Steps)
        return done.result.steps


def batch_report(url: str) -> list[str]:
    """Submit a batch whose last job waits for the others, and follow it to its end."""
    lines: list[str] = []
    with Client(url, timeout_s=10) as client:
        batch: Batch = client.submit_batch(
            [
                JobSpec("sleep_steps", {"steps": 2, "delay_s": 0.001}, ref="first"),
                JobSpec("sleep_steps", {"steps": 2, "delay_s": 0.001}, ref="second"),
                {"task": "noop", "depends_on": ["first", "second"]},
            ],
            name="typed",
        )
        last_id: str = batch.job_ids[-1]
        for event in client.stream_batch(batch.id):
            if isinstance(event, BatchJobEvent):
                if event.job_id == last_id:
                    lines.append(f"last: {event.kind}")
            elif isinstance(event, BatchProgressEvent):
                fraction: float = event.progress.fraction
                assert 0 <= fraction <= 1
            else:
                assert_type(event, BatchFinished)
                lines.append(f"finished: {event.counts.succeeded} of {event.total}")
        last = client.get(last_id)
        status: Status = "succeeded"
        lines.append(f"depends on {len(last.depends_on)}: {last.status == status}")
    return lines


async def batch_report_async(url: str) -> int:
    """The same batch through `AsyncClient`: how many members succeeded."""
    async with AsyncClient(url, timeout_s=10) as client:
        batch = await client.submit_batch([JobSpec("noop"), JobSpec("noop")])
        async for event in client.stream_batch(batch.id):
            if isinstance(event, BatchFinished):
                return event.counts.succeeded
    return -1
