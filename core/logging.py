"""structlog set-up: JSON lines in production, pretty output on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import orjson
import structlog

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
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # ARQ logs every job start and finish at INFO; tidings logs its own lifecycle events.
    logging.getLogger("arq").setLevel(max(level, logging.WARNING))
