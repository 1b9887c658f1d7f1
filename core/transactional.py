"""Enqueue inside the caller's own database transaction.

The job row and its `queued` event are written on the caller's connection, inside its
open transaction, together with a `pg_notify` on the namespace's `committed` channel.
Postgres delivers a notice only when, and if, the transaction commits: a rolled-back
transaction leaves no job, no event and no notice. Every worker listens on the channel
(`worker/committed.py`) and puts the job's token on its ARQ queue with ARQ's checked
enqueue, so the first worker to hear places it and the others find it placed. The job
starts as soon as the caller commits, with nothing for the caller to do after commit.
A notice no worker heard (every worker restarting at that moment) is covered by the
reconciler, which gives any waiting job without a token one within
`TIDINGS_RECONCILE_S`.

The connection may be an asyncpg connection (or a pool's), or a SQLAlchemy
`AsyncConnection` or `AsyncSession` on the asyncpg driver; it must be in a transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from tidings.core import dependencies, queue
from tidings.core.db import fairness, jobs
from tidings.core.db.foreign import on_foreign
from tidings.core.db.pool import Connection
from tidings.core.errors import BadRequest
from tidings.core.keyed_submission import apply_strategy, submitted_before
from tidings.core.model import Status, iso
from tidings.core.submission import (
    JobRequest,
    Submitted,
    batch_key_taken,
    existing_job,
    first_event,
    insert_job,
    insert_planned,
)

_ISOLATION = "SELECT current_setting('transaction_isolation') AS level"

# Postgres truncates nothing: a channel name longer than an identifier is an error.
MAX_CHANNEL_BYTES = 63


def committed_channel(namespace: str) -> str:
    """The Postgres channel a namespace's transactional submissions are announced on."""
    channel = f"{namespace}:committed"
    if len(channel.encode()) <= MAX_CHANNEL_BYTES:
        return channel
    return "tidings:committed:" + hashlib.sha256(namespace.encode()).hexdigest()[:40]


async def asyncpg_connection(connection: Any) -> Connection:
    """The asyncpg connection under `connection`, refused unless it is in a transaction.

    SQLAlchemy opens its driver-level transaction only when it first runs a statement,
    so a SQLAlchemy connection that is in a transaction but has run nothing yet is asked
    to run one (`SELECT 1`) before its asyncpg connection is used.
    """
    if isinstance(connection, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy):
        raw: Connection = connection
    elif hasattr(connection, "get_raw_connection") or hasattr(connection, "sync_session"):
        if hasattr(connection, "sync_session"):  # an AsyncSession: its current connection
            connection = await connection.connection()
        if not connection.in_transaction():
            raise not_in_transaction()
        await connection.exec_driver_sql("SELECT 1")
        fairy = await connection.get_raw_connection()
        raw = fairy.driver_connection
        if not isinstance(raw, asyncpg.Connection):
            raise BadRequest(
                "transactional submit needs SQLAlchemy's asyncpg driver (postgresql+asyncpg://...)",
                {"field": "connection", "reason": f"driver connection is {type(raw).__name__}"},
                code="unsupported_connection",
            )
    else:
        raise BadRequest(
            "connection must be an asyncpg connection or a SQLAlchemy AsyncConnection or "
            "AsyncSession",
            {"field": "connection", "reason": f"got {type(connection).__name__}"},
            code="unsupported_connection",
        )
    if not raw.is_in_transaction():
        raise not_in_transaction()
    return raw


def not_in_transaction() -> BadRequest:
    return BadRequest(
        "the connection is not in a transaction: open one (`async with conn.transaction():`, "
        "`async with session.begin():`) so the job commits or rolls back with your writes",
        {"field": "connection", "reason": "not in a transaction"},
        code="not_in_transaction",
    )


async def submit_in_transaction(connection: Any, request: JobRequest, channel: str) -> Submitted:
    """Create the job in the caller's transaction; it runs once that commits.

    The insert runs under a savepoint, so a taken idempotency key (answered with the
    existing job, or 409) leaves the caller's transaction usable. The result cache is
    not consulted: a job written with the caller's own changes is run for them.
    """
    conn = on_foreign(await asyncpg_connection(connection))
    request = replace(request, cache_ttl_s=None)  # a job of the caller's transaction runs
    row: asyncpg.Record | None
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            if request.depends_on:
                plan = dependencies.plan([request], in_batch=False)
                [row] = await insert_planned(conn, [request], plan)
            elif request.keys.acts_at_submit:
                previous = await submitted_before(conn, request)
                if previous is not None:
                    return Submitted(previous, created=False)
                row = await insert_keyed(conn, request)
            else:
                row = await insert_job(conn, request)
            assert row is not None  # only cron slots can be refused, and they are the worker's
            if row["status"] == Status.QUEUED:
                await jobs.announce(conn, channel=channel, payload=announcement(row))
    except asyncpg.UniqueViolationError:
        return Submitted(await existing_job(conn, request), created=False)
    return Submitted(row, created=True)


async def insert_keyed(conn: Connection, request: JobRequest) -> asyncpg.Record | None:
    """The job, after its key's strategy acted in the caller's transaction. What it
    cancelled is announced when that commits; a running job it asked to stop is found by
    its worker's heartbeat (there is no commit to publish the request on).

    The key's lock is held until the caller's transaction ends, and what the strategy
    reads of the key's jobs must be current, so the caller's transaction must be READ
    COMMITTED (Postgres' default): under REPEATABLE READ its snapshot, taken at its first
    statement, would miss jobs of the key committed since."""
    isolation = await conn.fetchrow(_ISOLATION)
    if isolation is not None and isolation["level"] != "read committed":
        raise BadRequest(
            f"key_strategy {str(request.keys.key_strategy)!r} needs a READ COMMITTED "
            "transaction: it decides against the key's jobs as they are now",
            {"field": "connection", "reason": f"the transaction is {isolation['level']}"},
            code="unsupported_isolation",
        )
    job_id = uuid.uuid4()
    superseded = await apply_strategy(conn, request, job_id)
    await fairness.announce_on_commit(conn, job_ids=superseded.job_ids)
    return await jobs.insert_job(conn, request.new_job(job_id))


async def submit_many_in_transaction(
    connection: Any, requests: Sequence[JobRequest], channel: str
) -> list[asyncpg.Record]:
    """Create every job in the caller's transaction, all or none (409 for a taken key)."""
    conn = on_foreign(await asyncpg_connection(connection))
    plan = dependencies.plan(requests, in_batch=True)
    try:
        async with conn.transaction():
            rows = await insert_planned(conn, requests, plan)
            for row in rows:
                if row["status"] == Status.QUEUED:  # a waiting one is announced on release
                    await jobs.announce(conn, channel=channel, payload=announcement(row))
    except asyncpg.UniqueViolationError:
        raise batch_key_taken() from None
    return rows


def announcement(row: asyncpg.Record | Mapping[str, Any]) -> str:
    """The notice of a new job: what a worker needs for its token and its `queued` event."""
    return orjson.dumps(
        {
            "id": str(row["id"]),
            "task": row["task"],
            "queue": row["queue"],
            "tenant": row["tenant"],
            "batch_id": None if row["batch_id"] is None else str(row["batch_id"]),
            "attempt": row["attempt"],
            "run_at": iso(row["run_at"]),
            "event_at": iso(row["event_at"]),
        }
    ).decode()


def announced(payload: str) -> tuple[queue.Token, dict[str, Any]]:
    """The token and the `queued` event of a job from its notice."""
    notice = orjson.loads(payload)
    run_at = datetime.fromisoformat(notice["run_at"]) if notice["run_at"] else None
    token = queue.Token(notice["id"], notice["attempt"], notice["queue"], run_at)
    row = {**notice, "event_at": datetime.fromisoformat(notice["event_at"])}
    return token, first_event(row)
