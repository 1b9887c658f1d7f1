"""Reading SSE streams in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from httpx_sse import EventSource


async def job_events(source: EventSource) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
    """(seq, kind, data) of each event; keep-alive comments are not events.

    httpx-sse dispatches an empty event for a comment once an id has been seen, which the
    SSE spec says not to do (an event with an empty data buffer is not dispatched).
    """
    async for sse in source.aiter_sse():
        if sse.data == "":
            continue
        yield int(sse.id), sse.event, sse.json()
