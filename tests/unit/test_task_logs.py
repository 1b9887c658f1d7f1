"""Capturing a task's own log lines: level, cap, storability, threads, and which task a line
belongs to. The lines go to a list here; tests/integration/test_task_logs.py runs real jobs."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tidings.core import task_logs
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings
from tidings.core.task_logs import CURRENT, TaskLogCapture

Line = tuple[str, dict[str, Any]]


class Kept:
    """What a capture wrote, in order."""

    def __init__(self) -> None:
        self.lines: list[Line] = []

    def write(self, message: str, data: dict[str, Any]) -> None:
        self.lines.append((message, data))

    @property
    def messages(self) -> list[str]:
        return [message for message, _ in self.lines]


def capture_into(kept: Kept, *, level: int = logging.INFO, max_lines: int = 100) -> TaskLogCapture:
    return TaskLogCapture(kept.write, min_level=level, max_lines=max_lines)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A stdlib logger that lets everything through to the capture handler alone."""
    handler = task_logs.TaskLogHandler()
    named = logging.getLogger(f"tests.task_logs.{uuid.uuid4().hex[:8]}")
    named.setLevel(logging.DEBUG)
    named.propagate = False
    named.addHandler(handler)
    yield named
    named.removeHandler(handler)


@pytest.fixture
def structlogger() -> Iterator[Any]:
    """A structlog logger whose chain starts with the capture processor."""
    previous = structlog.get_config()
    kept: list[dict[str, Any]] = []

    def collect(logger: Any, method_name: str, event_dict: Any) -> Any:
        kept.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(
        processors=[task_logs.capture_structlog, collect],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield structlog.get_logger()
    finally:
        structlog.configure(**previous)


async def test_lines_at_or_above_the_level_are_kept_with_their_level_and_logger(
    logger: logging.Logger,
) -> None:
    kept = Kept()
    token = CURRENT.set(capture_into(kept, level=logging.INFO))
    try:
        logger.debug("too quiet")
        logger.info("fetched %d pages", 3, extra={"host": "example.org"})
        logger.warning("slow")
    finally:
        CURRENT.reset(token)

    assert kept.lines == [
        ("fetched 3 pages", {"level": "info", "logger": logger.name, "host": "example.org"}),
        ("slow", {"level": "warning", "logger": logger.name}),
    ]


async def test_outside_a_task_nothing_is_captured(logger: logging.Logger) -> None:
    kept = Kept()
    capture = capture_into(kept)
    logger.info("no task runs here")
    assert CURRENT.get() is None
    assert kept.lines == [] and capture.kept == 0


async def test_past_the_cap_lines_are_counted_and_reported_in_one_closing_note(
    logger: logging.Logger,
) -> None:
    kept = Kept()
    capture = capture_into(kept, max_lines=3)
    token = CURRENT.set(capture)
    try:
        for number in range(10):
            logger.info("line %d", number)
    finally:
        CURRENT.reset(token)
    capture.close()
    capture.close()  # a second close writes nothing more

    assert kept.messages == [
        "line 0",
        "line 1",
        "line 2",
        "7 more log lines dropped (at most 3 are kept)",
    ]
    assert kept.lines[-1][1] == {"level": "warning", "logger": "tidings", "dropped": 7}


async def test_a_capture_under_its_cap_closes_without_a_note() -> None:
    kept = Kept()
    capture = capture_into(kept, max_lines=3)
    capture.take(logging.INFO, None, "one", {})
    capture.close()
    capture.take(logging.INFO, None, "after the attempt ended", {})
    assert kept.messages == ["one"]


async def test_values_json_cannot_hold_are_kept_as_their_repr(logger: logging.Logger) -> None:
    kept = Kept()
    token = CURRENT.set(capture_into(kept))
    try:
        logger.info("nul \x00 here", extra={"path": object.__new__(object), "ok": [1, "a"]})
    finally:
        CURRENT.reset(token)

    [(message, data)] = kept.lines
    assert message == "nul \ufffd here"
    assert data["ok"] == [1, "a"]
    assert data["path"].startswith("<object object at ")


async def test_a_line_that_cannot_be_stored_is_dropped_without_raising(
    logger: logging.Logger,
) -> None:
    def refuse(message: str, data: dict[str, Any]) -> None:
        raise ValueError("not storable")

    capture = TaskLogCapture(refuse, min_level=logging.INFO, max_lines=10)
    token = CURRENT.set(capture)
    try:
        logger.info("dropped")
        # Arguments that do not fit the format: the record has no message to keep.
        misfit = logging.makeLogRecord({"msg": "%d pages", "args": ("many",), "levelno": 20})
        task_logs.TaskLogHandler().emit(misfit)
    finally:
        CURRENT.reset(token)
    assert capture.kept == 0


async def test_fields_a_bound_logger_repeats_are_left_out_unless_they_differ() -> None:
    kept = Kept()
    capture = TaskLogCapture(
        kept.write, min_level=logging.INFO, max_lines=10, known={"job_id": "j1", "attempt": 2}
    )
    capture.take(logging.INFO, None, "same", {"job_id": "j1", "attempt": 2, "rows": 5})
    capture.take(logging.INFO, None, "other", {"job_id": "j2"})
    assert kept.lines == [
        ("same", {"level": "info", "rows": 5}),
        ("other", {"level": "info", "job_id": "j2"}),
    ]


async def test_structlog_lines_are_captured_and_still_passed_on(structlogger: Any) -> None:
    kept = Kept()
    token = CURRENT.set(capture_into(kept))
    try:
        structlogger.info("page.fetched", page=3)
        structlogger.debug("too quiet")
        try:
            raise KeyError("missing")
        except KeyError:
            structlogger.exception("page.failed")
    finally:
        CURRENT.reset(token)

    assert kept.messages == ["page.fetched", "page.failed"]
    assert kept.lines[0][1] == {"level": "info", "page": 3}
    failed = kept.lines[1][1]
    assert failed["level"] == "error"
    assert "KeyError: 'missing'" in failed["exception"]


async def test_each_task_keeps_only_its_own_lines(logger: logging.Logger) -> None:
    turn = asyncio.Barrier(2)

    async def task(name: str) -> None:
        for step in range(3):
            logger.info("%s step %d", name, step)
            await turn.wait()  # the two tasks log in lockstep, interleaved

    first, second = Kept(), Kept()
    runs = []
    for name, kept in (("first", first), ("second", second)):
        context = contextvars.copy_context()
        context.run(CURRENT.set, capture_into(kept))
        runs.append(asyncio.create_task(task(name), context=context))
    await asyncio.gather(*runs)

    assert first.messages == ["first step 0", "first step 1", "first step 2"]
    assert second.messages == ["second step 0", "second step 1", "second step 2"]


async def test_a_line_logged_in_a_thread_the_task_started_is_kept(
    logger: logging.Logger,
) -> None:
    kept = Kept()
    capture = capture_into(kept)
    token = CURRENT.set(capture)
    try:
        await asyncio.to_thread(logger.info, "from a thread")
    finally:
        CURRENT.reset(token)
    # The thread handed the line to the loop before it returned, so the line was written
    # (callbacks run in the order they were scheduled) before this task resumed.
    assert kept.messages == ["from a thread"]


def test_the_level_names_and_off() -> None:
    assert task_logs.level_of("INFO") == logging.INFO
    assert task_logs.level_of("debug") == logging.DEBUG
    assert task_logs.level_of("off") is None


def test_a_worker_process_lets_task_lines_below_its_log_level_reach_the_capture() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    try:
        configure_logging(Settings(log_level="warning", task_log_level="debug"))
        structlog.configure(cache_logger_on_first_use=False)
        output = root.handlers[0]
        assert root.level == logging.DEBUG  # records are made for the capture …
        assert output.level == logging.WARNING  # … and the output still drops them

        configure_logging(Settings(log_level="info", task_log_level="off"))
        assert root.level == logging.INFO
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)


def test_the_stdlib_handler_is_shared_and_removed_with_its_last_user() -> None:
    root = logging.getLogger()

    def installed() -> int:
        return sum(isinstance(h, task_logs.TaskLogHandler) for h in root.handlers)

    with task_logs.capturing_stdlib():
        with task_logs.capturing_stdlib():
            assert installed() == 1
        assert installed() == 1
    assert installed() == 0


async def test_below_the_output_level_structlog_works_only_inside_a_task() -> None:
    previous = structlog.get_config()
    reached: list[str] = []

    def record(logger: Any, method_name: str, event_dict: Any) -> Any:
        reached.append(str(event_dict["event"]))
        raise structlog.DropEvent

    structlog.configure(
        processors=[task_logs.capture_structlog, record],
        wrapper_class=task_logs.bound_logger_class(logging.WARNING, logging.INFO),
        cache_logger_on_first_use=False,
    )
    kept = Kept()
    try:
        log = structlog.get_logger()
        log.info("outside: never processed")
        await log.ainfo("outside, async: never processed")
        log.debug("below both levels")
        log.warning("outside: output")
        token = CURRENT.set(capture_into(kept))
        try:
            log.info("inside: captured")
            await log.ainfo("inside, async: captured")
        finally:
            CURRENT.reset(token)
    finally:
        structlog.configure(**previous)

    assert reached == ["outside: output", "inside: captured", "inside, async: captured"]
    assert kept.messages == ["inside: captured", "inside, async: captured"]
