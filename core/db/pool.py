"""The asyncpg pool, with JSON codecs, and the boundary where driver errors become ours."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tidings.core import serialization
from tidings.core.errors import Unavailable

# Errors that mean "the database is not reachable now", as opposed to a bad statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    # The server is shutting down or restarting (admin shutdown, crash recovery).
    asyncpg.exceptions.OperatorInterventionError,
    # The server ended a session whose transaction sat idle too long (see `create_pool`):
    # what the transaction did was rolled back, and it can be tried again.
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
)

Pool = asyncpg.Pool
# A connection of its own, or one acquired from a pool (e.g. to run a transaction on).
Connection = asyncpg.Connection | PoolConnectionProxy
# What a statement function runs on: the pool, or a connection.
Db = asyncpg.Pool | Connection


# jsonb's binary wire format: a version byte, then the JSON text.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + serialization.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return serialization.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary, not text: asyncpg reads composite values (claim_next_job returns whole `jobs`
    # and `job_events` rows) only in binary, and cannot use a text codec inside them.
    await conn.set_type_codec(
        "json",
        encoder=serialization.dumps,
        decoder=serialization.loads,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset runs `RESET ALL; UNLISTEN *; …` on every release, one more
    round trip per statement made through the pool. tidings leaves no session state
    behind (its advisory locks are transaction-scoped), so there is nothing to reset.
    """


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout_s: float = 5.0,
    idle_in_transaction_s: float | None = None,
) -> Pool:
    """Open a pool whose json/jsonb columns read and write Python values.

    New connections give up after `connect_timeout_s`, so a request made while Postgres
    is unreachable fails fast (503) instead of hanging. With `idle_in_transaction_s`,
    Postgres ends a session that leaves a transaction open and silent for that long: a
    process frozen mid-transaction (SIGSTOP, a suspended VM) cannot hold its row and
    advisory locks, say the reaper's, for as long as it stays frozen.
    """

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        if idle_in_transaction_s is not None:
            timeout_ms = max(1, round(idle_in_transaction_s * 1000))
            await conn.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")

    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init,
            reset=_keep_session,
            timeout=connect_timeout_s,
            command_timeout=30,
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"postgres is unreachable: {exc.__class__.__name__}") from exc
    assert pool is not None
    return pool


async def ping(db: Db) -> None:
    """One round trip: raises a `CONNECTION_ERRORS` error when Postgres does not answer."""
    await db.fetchval("SELECT 1")
