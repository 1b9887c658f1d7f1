"""A job's history, read by seq range: what streams replay and the JSON history pages.

Lifecycle events are one `job_events` row each; progress and log events are stored in
runs, one `job_event_runs` row per attempt and flush (migration 0007). Each seq of a job
is in exactly one of the two, so the events of a seq range are the rows in it plus the
runs that overlap it, expanded and cut to the range. Readers get events as their public
JSON (`core.events.make_event`), in seq order.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tidings.core import serialization
from tidings.core.db.pool import Db
from tidings.core.events import event_json, make_run, run_events
from tidings.core.model import iso

# Seqs are 32-bit integers in Postgres: "no upper end" is this.
NO_END = 2**31 - 1

# Rows (`notes` NULL) and runs (`notes` set) of the seq range ($2, $3], in seq order.
_RANGE = """
SELECT e.job_id, e.seq, e.kind, e.status, e.attempt, e.progress_current, e.progress_total,
       e.message, e.data, e.at, NULL::bytea AS notes,
       j.task AS job_task, j.queue AS job_queue, j.tenant AS job_tenant,
       j.batch_id AS job_batch
  FROM job_events e JOIN jobs j ON j.id = e.job_id
 WHERE e.job_id = $1 AND e.seq > $2 AND e.seq <= $3
UNION ALL
SELECT r.job_id, r.first_seq, NULL, r.status, r.attempt, NULL, NULL, NULL, NULL, r.at, r.notes,
       j.task, j.queue, j.tenant, j.batch_id
  FROM job_event_runs r JOIN jobs j ON j.id = r.job_id
 WHERE r.job_id = $1 AND r.last_seq > $2 AND r.first_seq <= $3
ORDER BY 2
"""


def _expanded(rows: list[asyncpg.Record], after: int, upto: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for row in rows:
        if row["notes"] is None:
            events.append(event_json(row))
            continue
        run = make_run(
            str(row["job_id"]),
            row["job_task"],
            row["job_queue"],
            row["job_tenant"],
            None if row["job_batch"] is None else str(row["job_batch"]),
            row["status"],
            row["attempt"],
            iso(row["at"]),
            row["seq"],
            serialization.loads(row["notes"]),
        )
        events.extend(event for event in run_events(run) if after < event["seq"] <= upto)
    return events


async def events_between(
    db: Db, *, job_id: uuid.UUID, after: int, upto: int = NO_END
) -> list[dict[str, Any]]:
    """The events of `job_id` with `after` < seq <= `upto`, in order."""
    return _expanded(await db.fetch(_RANGE, job_id, after, upto), after, upto)


async def events_after(db: Db, *, job_id: uuid.UUID, after: int) -> list[dict[str, Any]]:
    """Every event of `job_id` with seq greater than `after`, in order."""
    return await events_between(db, job_id=job_id, after=after)


async def page_after(db: Db, *, job_id: uuid.UUID, after: int, limit: int) -> list[dict[str, Any]]:
    """The first `limit` events of `job_id` with seq greater than `after`, in order (seqs
    are gapless: those are the seqs `after`+1 … `after`+`limit` that exist)."""
    return await events_between(db, job_id=job_id, after=after, upto=after + limit)


async def page_before(
    db: Db, *, job_id: uuid.UUID, before: int, limit: int
) -> list[dict[str, Any]]:
    """The last `limit` events of `job_id` with seq less than `before`, in order."""
    return await events_between(
        db, job_id=job_id, after=max(0, before - 1 - limit), upto=before - 1
    )
