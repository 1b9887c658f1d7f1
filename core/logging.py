"""structlog set-up: JSON lines in production, pretty output on a terminal.

Tasks' own log lines are captured into their jobs' events (`core.task_logs`) from
`TIDINGS_TASK_LOG_LEVEL`, which may be below `TIDINGS_LOG_LEVEL`: loggers then let the
lower lines through to the capture, and the output drops them.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import orjson
import structlog

from tidings.core import task_logs
from tidings.core.settings import Settings


def json_text(value: Any, **options: Any) -> str:
    """structlog's JSON serializer: orjson, several times faster than `json` per line.

    What orjson cannot encode (integers past 64 bits, very deep nesting) goes to `json`.
    """
    try:
        return orjson.dumps(
            value, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS
        ).decode()
    except TypeError:
        return json.dumps(value, **options)


def configure_logging(settings: Settings) -> None:
    """Route structlog and stdlib logging through one renderer chosen by the settings."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    task_level = task_logs.level_of(settings.task_log_level)
    lowest = level if task_level is None else min(level, task_level)
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=json_text)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    captured: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        task_logs.capture_structlog,
    ]
    if lowest < level:
        captured.append(drop_below(level))
    structlog.configure(
        processors=[
            *captured,
            *shared[1:],
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=task_logs.bound_logger_class(level, task_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lowest)
    # ARQ logs every job start and finish at INFO; tidings logs its own lifecycle events.
    logging.getLogger("arq").setLevel(max(level, logging.WARNING))


def drop_below(level: int) -> structlog.typing.Processor:
    """A processor that drops lines under `level`, after the task capture has seen them."""

    def drop(
        logger: Any, method_name: str, event_dict: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        if task_logs.METHOD_LEVELS.get(method_name, logging.INFO) < level:
            raise structlog.DropEvent
        return event_dict

    return drop
