"""Batches: jobs submitted together and followed as one, with one progress bar.

A batch is created with its members in one transaction (`create`), then sealed, so it
cannot finish before its last member exists. From then on a trigger keeps its counts and
appends one entry to its gapless log per member transition, and `batch.finished` when no
member waits or runs (migration 0008); children a member spawns join its batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tidings.core import serialization
from tidings.core.db import batches
from tidings.core.db.pool import Connection, Db
from tidings.core.errors import NotFound
from tidings.core.model import TERMINAL_STATUSES, Status, iso
from tidings.core.shapes import BatchCounts, BatchState
from tidings.core.submission import JobRequest, Submitter


async def create(
    submitter: Submitter,
    requests: Sequence[JobRequest],
    *,
    tenant: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[uuid.UUID, list[asyncpg.Record]]:
    """A new batch of `requests`, all or nothing: its id and the member rows."""
    batch_id = uuid.uuid4()
    members = [replace(request, batch_id=batch_id) for request in requests]
    metadata_json = None if metadata is None else serialization.dumps(metadata).decode()

    async def open_batch(conn: Connection) -> None:
        await batches.create(
            conn, batch_id=batch_id, tenant=tenant, name=name, metadata_json=metadata_json
        )

    async def seal_batch(conn: Connection) -> None:
        await batches.seal(conn, batch_id=batch_id)

    rows = await submitter.submit_many(members, before=open_batch, after=seal_batch)
    return batch_id, rows


async def load_batch(db: Db, raw_id: str, tenant: str) -> asyncpg.Record:
    """The caller's batch for an id, or 404 (another tenant's batch is a 404 too)."""
    try:
        batch_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"no batch with id {raw_id!r}") from None
    row = await batches.get(db, batch_id=batch_id, tenant=tenant)
    if row is None:
        raise NotFound(f"no batch with id {raw_id!r}")
    return row


def counts(row: asyncpg.Record) -> BatchCounts:
    """Members per status."""
    return {status.value: row[status.value] for status in Status}  # type: ignore[return-value]


def batch_json(row: asyncpg.Record, now: datetime | None = None) -> BatchState:
    """The public JSON of a batch row (`core.db.batches` reads add `running_fraction`)."""
    total = row["total"]
    done = sum(row[status.value] for status in TERMINAL_STATUSES)
    running = float(row["running_fraction"])
    fraction = min(1.0, (done + running) / total) if total else 1.0
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "metadata": row["metadata"],
        "tenant": row["tenant"],
        "status": "finished" if row["finished_at"] is not None else "open",
        "total": total,
        "counts": counts(row),
        "progress": {"done": done, "total": total, "fraction": round(fraction, 6)},
        "eta_s": eta_s(row, done + running, now),
        "seq": row["seq"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
    }


def eta_s(row: asyncpg.Record, done: float, now: datetime | None = None) -> float | None:
    """Seconds until an open batch ends, at the rate its members have ended so far."""
    started = row["started_at"]
    if row["finished_at"] is not None or started is None or done <= 0:
        return None
    elapsed: float = ((now or datetime.now(UTC)) - started).total_seconds()
    if elapsed <= 0:
        return None
    return round(max(0.0, float(row["total"]) - done) * elapsed / done, 3)


def log_entry(row: asyncpg.Record, batch_id: str) -> dict[str, Any]:
    """One entry of a batch's log as its stream sends it: a member's transition, or the
    end of the batch."""
    if row["kind"] == "batch.finished":
        data = row["data"]
        return {
            "seq": row["seq"],
            "batch_id": batch_id,
            "counts": {k: data[k] for k in ("succeeded", "failed", "cancelled")},
            "total": data["total"],
            "finished_at": data["finished_at"],
            "kind": "batch.finished",
        }
    return {
        "seq": row["seq"],
        "batch_id": batch_id,
        "job_id": str(row["job_id"]),
        "task": row["task"],
        "kind": row["job_kind"],
        "status": row["status"],
        "at": iso(row["at"]),
    }


def progress_event(batch: BatchState) -> dict[str, Any]:
    """The aggregated `progress` event of a batch stream (no id: it is a snapshot)."""
    return {
        "batch_id": batch["id"],
        "counts": batch["counts"],
        "total": batch["total"],
        "progress": batch["progress"],
        "eta_s": batch["eta_s"],
        "seq": batch["seq"],
        "at": datetime.now(UTC).isoformat(),
    }
