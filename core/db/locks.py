"""Postgres advisory locks: every lock tidings takes, by name, with one id each.

Ids are fixed 64-bit numbers shared by every tidings process ("tidings" in ASCII, with a
last byte per lock). Every lock is transaction-scoped and ends with its transaction: a
session lock would outlive its use behind a transaction pooler (PgBouncer), which may run
the unlock on another server session than the lock.
"""

from __future__ import annotations

from tidings.core.db.pool import Connection

MIGRATIONS = 0x7469_6469_6E67_73  # one process applies migrations at a time
REAPER = 0x7469_6469_6E67_72  # one reaper re-queues lost workers' jobs at a time
RETENTION = 0x7469_6469_6E67_70  # one pruner deletes expired jobs at a time

_WAIT_TRANSACTION_LOCK = "SELECT pg_advisory_xact_lock($1)"


async def try_transaction_lock(conn: Connection, lock_id: int) -> bool:
    """Take `lock_id` until the current transaction ends, if no one else holds it."""
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_id)
    return taken


async def wait_transaction_lock(conn: Connection, lock_id: int) -> None:
    """Wait for `lock_id`, then hold it until the current transaction ends."""
    await conn.execute(_WAIT_TRANSACTION_LOCK, lock_id)
