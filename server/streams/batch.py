"""`/batches/{id}/events`: a batch's own gapless stream, replayed from Postgres and live.

The stream subscribes to its batch's events on the hub first (every member's events carry
`batch_id`), then reads the batch's log after `Last-Event-ID` from Postgres. A member's
event only wakes it: the log, written in the same transaction as the transition, is the
source, so every entry is sent once and in order whatever the pub/sub lost. Wake-ups are
coalesced: the stream reads Postgres at most every `min_gap_s`, sending the new log entries
(each with its seq as SSE id) and, when anything moved, one aggregated `progress` snapshot
(no id: a snapshot is not history). It ends with `batch.finished`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import asyncpg
from sse_starlette import ServerSentEvent
from starlette.requests import Request

from tidings.core import serialization
from tidings.core.batches import batch_json, load_batch, log_entry, progress_event
from tidings.core.db import batches
from tidings.core.errors import Unprocessable
from tidings.server.auth import authority_of
from tidings.server.state import ServerState
from tidings.server.streams.endpoints import held_stream, resume_after
from tidings.server.streams.hub import Notice, Subscription, batch_key
from tidings.server.streams.response import StreamResponse

# How often a batch stream may read Postgres: at most five progress events a second.
MIN_GAP_S = 0.2
LOG_PAGE = 1_000


async def batch_stream(
    request: Request, state: ServerState, tenant: str, raw_id: str
) -> StreamResponse:
    """GET /batches/{id}/events: the batch's log as SSE, resumable with Last-Event-ID."""
    row = await load_batch(state.pool, raw_id, tenant)
    after = resume_after(request)
    if after > row["seq"]:
        raise Unprocessable(
            f"no event {after} yet: the batch's last event is {row['seq']}",
            {"field": "Last-Event-ID", "reason": "beyond the batch's last event"},
            code="invalid_query",
        )
    batch_id = row["id"]
    return held_stream(
        state,
        tenant,
        authority_of(request.scope),
        batch_key(str(batch_id)),
        lambda subscription: follow_batch(state.pool, subscription, batch_id, tenant, after),
        encode_batch_event,
    )


async def follow_batch(
    pool: asyncpg.Pool,
    subscription: Subscription,
    batch_id: uuid.UUID,
    tenant: str,
    after: int,
    *,
    min_gap_s: float = MIN_GAP_S,
) -> AsyncGenerator[dict[str, Any] | Notice, None]:
    """The batch's log after seq `after` and its progress, until `batch.finished`."""
    seen = after
    sent_progress: tuple[Any, ...] | None = None
    while True:
        read_at = time.monotonic()
        while True:
            rows = await batches.events_after(pool, batch_id=batch_id, after=seen, limit=LOG_PAGE)
            for row in rows:
                entry = log_entry(row, str(batch_id))
                seen = entry["seq"]
                yield entry
                if entry["kind"] == "batch.finished":
                    return
            if len(rows) < LOG_PAGE:
                break
        row = await batches.get(pool, batch_id=batch_id, tenant=tenant)
        if row is None:  # deleted by retention while followed
            return
        if row["finished_at"] is not None and row["seq"] <= seen:
            return  # resumed after its end: `batch.finished` was sent already
        snapshot = progress_event(batch_json(row))
        moved = (snapshot["seq"], snapshot["progress"]["fraction"])
        if moved != sent_progress and row["seq"] == seen:
            sent_progress = moved
            yield {**snapshot, "kind": "progress"}
        woken = await _woken(subscription)
        if woken is Notice.CLOSED:
            return
        if woken is Notice.KEEPALIVE:
            yield woken
            continue
        # Coalesce: whatever else arrives before the gap is over is read in one go.
        await asyncio.sleep(max(0.0, read_at + min_gap_s - time.monotonic()))
        subscription.events.clear()


async def _woken(subscription: Subscription) -> Notice | None:
    """Wait for a member's event (None), a resync (None too) or another notice."""
    woken = await subscription.next()
    if isinstance(woken, Notice) and woken is not Notice.RESYNC:
        return woken
    return None


def encode_batch_event(event: dict[str, Any] | Notice) -> ServerSentEvent | None:
    """A log entry as SSE with its seq as id (`job`, `batch.finished`); a `progress`
    snapshot without one."""
    if isinstance(event, Notice):
        return None
    kind = event["kind"]
    if kind == "progress":
        body = {key: value for key, value in event.items() if key != "kind"}
        return ServerSentEvent(data=serialization.dumps_str(body), event="progress")
    if kind == "batch.finished":
        body = {key: value for key, value in event.items() if key != "kind"}
        return ServerSentEvent(
            data=serialization.dumps_str(body), event="batch.finished", id=str(event["seq"])
        )
    return ServerSentEvent(data=serialization.dumps_str(event), event="job", id=str(event["seq"]))
