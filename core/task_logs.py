"""A task's own logging, kept as `log` events of its job.

Tasks log with stdlib `logging` and structlog, and so do the libraries they call. While a
task runs, the worker sets `CURRENT` to the attempt's `TaskLogCapture`; the logging handler
and the structlog processor here hand it each line logged in that context. `CURRENT` is a
context variable, not module state: asyncio copies it into the task and into what the
task starts (coroutines, `asyncio.to_thread` threads) and into nothing else, so two jobs
running side by side in one worker each keep only their own lines.

A capture never breaks its task: a line below the level is skipped, a line that cannot be
stored is dropped, and past `max_lines` lines are only counted, then reported in one
closing note, so a chatty task cannot flood Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import structlog

from tidings.core import serialization

# Names TIDINGS_TASK_LOG_LEVEL may use; `off` captures nothing.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# structlog's method names, as levels.
METHOD_LEVELS = {
    **LEVELS,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "exception": logging.ERROR,
    "fatal": logging.CRITICAL,
}
# Attributes every LogRecord has: whatever else a record carries came from `extra=`.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# Where a captured line goes: (message, data), on the event loop's thread.
Write = Callable[[str, dict[str, Any]], None]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

CURRENT: ContextVar[TaskLogCapture | None] = ContextVar("tidings_task_log_capture", default=None)


def level_of(name: str) -> int | None:
    """The level TIDINGS_TASK_LOG_LEVEL names (`info` → 20), or None for `off`."""
    return LEVELS.get(name.lower())


def jsonable(value: Any) -> Any:
    """`value` if it can be stored as jsonb, else its repr (a log field is for reading)."""
    try:
        serialization.storable(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def exception_text(exc_info: Any) -> str | None:
    """A formatted traceback from a record's or an event's `exc_info` (True: the current one)."""
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[1] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip()


class TaskLogCapture:
    """The log lines of one running attempt, written through `write` up to `max_lines`.

    `known` holds fields every line would repeat (the job id, task and attempt a bound
    logger carries): a field equal to its known value is left out.
    """

    def __init__(
        self,
        write: Write,
        *,
        min_level: int,
        max_lines: int,
        known: Mapping[str, Any] | None = None,
    ) -> None:
        self.min_level = min_level
        self.max_lines = max_lines
        self.kept = 0
        self.dropped = 0
        self._write = write
        self._known = dict(known or {})
        self._closed = False
        self._writing = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def wants(self, level: int) -> bool:
        """Whether a line at `level` would be kept (cheap: checked before a line is built)."""
        return level >= self.min_level and not self._closed

    def take(self, level: int, logger: str | None, message: str, fields: Mapping[str, Any]) -> None:
        """Keep one log line. Safe from any thread; never raises into the code that logged."""
        if not self.wants(level):
            return
        try:
            text, data = self._line(level, logger, message, fields)
            if threading.get_ident() == self._thread:
                self._keep(text, data)
            else:  # a thread the task started: the writer belongs to the loop's thread
                self._loop.call_soon_threadsafe(self._keep, text, data)
        except Exception:
            return  # a line that cannot be made storable, or a loop already closed: dropped

    def close(self) -> None:
        """End the capture (later lines are ignored) and note how many lines were dropped."""
        if self._closed:
            return
        self._closed = True
        if self.dropped:
            note = f"{self.dropped} more log lines dropped (at most {self.max_lines} are kept)"
            data = {"level": "warning", "logger": "tidings", "dropped": self.dropped}
            try:
                self._write(note, data)
            except Exception:
                return  # the task's outcome matters more than this note

    def _line(
        self, level: int, logger: str | None, message: str, fields: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        data: dict[str, Any] = {"level": logging.getLevelName(level).lower()}
        if logger:
            data["logger"] = logger
        for key, value in fields.items():
            if key in data or (key in self._known and self._known[key] == value):
                continue
            data[str(key)] = jsonable(value)
        return str(message).replace("\x00", "\ufffd"), data

    def _keep(self, message: str, data: dict[str, Any]) -> None:
        if self._closed or self._writing:
            return  # after the attempt, or logged by the write itself
        if self.kept >= self.max_lines:
            self.dropped += 1
            return
        self._writing = True
        try:
            self._write(message, data)
        except Exception:
            return  # not storable after all: dropped
        finally:
            self._writing = False
        self.kept += 1


class TaskLogHandler(logging.Handler):
    """A stdlib logging handler that hands records logged inside a task to its capture."""

    def __init__(self) -> None:
        super().__init__()
        self.users = 0  # workers of this process that installed it (see `capturing_stdlib`)

    def emit(self, record: logging.LogRecord) -> None:
        capture = CURRENT.get()
        if capture is None or not capture.wants(record.levelno):
            return
        try:
            message = record.getMessage()
        except Exception:
            return  # arguments that do not fit the format: the line is dropped
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in RECORD_ATTRIBUTES and not key.startswith("_")
        }
        if record.exc_info:
            fields["exception"] = exception_text(record.exc_info)
        capture.take(record.levelno, record.name, message, fields)


@contextmanager
def capturing_stdlib() -> Iterator[None]:
    """Install the handler on the root logger while the block runs.

    Workers of one process share one handler, removed when the last of them stops. Only
    records the loggers let through reach it: a worker started by `tidings worker` sets
    the root level low enough (`core.logging`); an application that runs a worker in its
    own process keeps its own logging levels.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, TaskLogHandler)), None)
    if handler is None:
        handler = TaskLogHandler()
        root.addHandler(handler)
    handler.users += 1
    try:
        yield
    finally:
        handler.users -= 1
        if handler.users <= 0:
            root.removeHandler(handler)


def bound_logger_class(level: int, task_level: int | None) -> type[Any]:
    """structlog's filtering bound logger for output at `level`, whose methods for the levels
    from `task_level` up to `level` do something only inside a task (one context variable
    read elsewhere), so capturing quieter lines costs code outside tasks nothing."""
    if task_level is None or task_level >= level:
        return structlog.make_filtering_bound_logger(level)
    lower = structlog.make_filtering_bound_logger(task_level)
    gated: dict[str, Any] = {}
    for name, number in METHOD_LEVELS.items():
        if task_level <= number < level:
            gated[name] = _in_tasks_only(getattr(lower, name))
            gated[f"a{name}"] = _in_tasks_only_async(getattr(lower, f"a{name}"))
    return type(f"TaskAware{lower.__name__}", (lower,), gated)


def _in_tasks_only(method: Callable[..., Any]) -> Callable[..., Any]:
    def in_tasks_only(self: Any, event: Any = None, *args: Any, **kw: Any) -> Any:
        if CURRENT.get() is None:
            return None
        return method(self, event, *args, **kw)

    return in_tasks_only


def _in_tasks_only_async(method: Callable[..., Any]) -> Callable[..., Any]:
    async def in_tasks_only(self: Any, event: Any = None, *args: Any, **kw: Any) -> Any:
        if CURRENT.get() is None:
            return None
        return await method(self, event, *args, **kw)

    return in_tasks_only


def capture_structlog(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: hand a line logged inside a task to its capture, unchanged."""
    capture = CURRENT.get()
    if capture is None:
        return event_dict
    level = METHOD_LEVELS.get(method_name, logging.INFO)
    if not capture.wants(level):
        return event_dict
    fields = {key: value for key, value in event_dict.items() if key != "event"}
    exc_info = fields.pop("exc_info", None)
    if exc_info:
        fields["exception"] = exception_text(exc_info)
    logger_name = fields.pop("logger", None)
    capture.take(
        level,
        logger_name if isinstance(logger_name, str) else None,
        str(event_dict.get("event", "")),
        fields,
    )
    return event_dict
