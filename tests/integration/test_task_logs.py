"""A task's own `logging` and structlog lines become `log` events of its job, in a real worker.

Logging is set up as `tidings worker` sets it up (`configure_logging`): output at warning,
task lines captured from info.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
import structlog

from tests.support.servers import ServerHandle, WorkerHandle
from tidings.client import AsyncClient, Event
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings

WITHIN_S = 10.0
TASK_LOG_MAX = 20


@pytest.fixture(scope="module")
def logging_as_in_a_worker_process() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    configure_logging(Settings(log_level="warning", task_log_level="info", log_format="json"))
    # Not cached: later test modules reconfigure structlog and must see their own config.
    structlog.configure(cache_logger_on_first_use=False)
    yield
    handlers, level, config = saved
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture(scope="module")
def settings(settings: Settings, logging_as_in_a_worker_process: None) -> Settings:
    return replace(
        settings,
        tasks=("tidings.worker.tasks.examples", "tests.support.logging_tasks"),
        task_log_level="info",
        task_log_max=TASK_LOG_MAX,
    )


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, timeout_s=WITHIN_S) as client:
        yield client


async def run(client: AsyncClient, task: str, **args: Any) -> list[Event]:
    """Submit a job, wait for it to end, and return its whole history."""
    job = await client.submit(task, args=args)
    await client.wait(job.id, timeout=WITHIN_S)
    return await client.history(job.id)


def logged(events: list[Event]) -> list[tuple[str | None, Any]]:
    return [(event.message, event.data) for event in events if event.kind == "log"]


async def test_logging_and_structlog_lines_become_log_events_from_the_level_up(
    client: AsyncClient,
) -> None:
    events = await run(client, "log_both_ways")

    assert [event.kind for event in events] == ["queued", "started", *["log"] * 5, "succeeded"]
    source = "tests.logging_tasks"
    assert logged(events) == [
        ("info from logging, 3 items", {"level": "info", "logger": source, "source": "cache"}),
        ("warning from logging", {"level": "warning", "logger": source}),
        ("structlog.line", {"level": "info", "rows": 7}),
        ("from a worker thread", {"level": "info", "logger": source}),
        ("from job.log", None),
    ]


async def test_a_chatty_task_keeps_its_first_lines_and_notes_how_many_it_dropped(
    client: AsyncClient,
) -> None:
    events = await run(client, "chatty", lines=100)

    lines = logged(events)
    assert [message for message, _ in lines[:-1]] == [f"line {n}" for n in range(TASK_LOG_MAX)]
    assert lines[-1] == (
        f"80 more log lines dropped (at most {TASK_LOG_MAX} are kept)",
        {"level": "warning", "logger": "tidings", "dropped": 80},
    )
    assert events[-1].kind == "succeeded" and events[-1].result == 100


async def test_jobs_running_side_by_side_keep_only_their_own_lines(client: AsyncClient) -> None:
    steps = 4
    first, second = [await client.submit("log_in_lockstep", steps=steps) for _ in range(2)]
    # Each step of one waits for the same step of the other: they run interleaved.
    done = await asyncio.gather(
        client.wait(first.id, timeout=WITHIN_S), client.wait(second.id, timeout=WITHIN_S)
    )
    assert [job.status for job in done] == ["succeeded", "succeeded"]

    for job in (first, second):
        lines = logged(await client.history(job.id))
        assert len(lines) == 2 * steps
        stdlib = [
            message for message, data in lines if data["level"] == "info" and "of" not in data
        ]
        assert stdlib == [f"step {step} of job {job.id}" for step in range(steps)]
        assert [data["of"] for _, data in lines if "of" in data] == [job.id] * steps


async def test_a_failing_task_keeps_its_log_line_with_the_traceback_before_failing(
    client: AsyncClient,
) -> None:
    events = await run(client, "log_then_fail")

    assert [event.kind for event in events] == ["queued", "started", "log", "failed"]
    [(message, data)] = logged(events)
    assert message == "could not find the report"
    assert data["level"] == "error"
    assert "KeyError: 'report-42'" in data["exception"]
    failed = events[-1].error
    assert failed is not None and failed.message == "no report to export"
