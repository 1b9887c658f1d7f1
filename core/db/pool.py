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


# asyncpg's default: prepared statements kept per connection on a direct connection.
STATEMENT_CACHE_SIZE = 100

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


async def behind_pooler(conn: asyncpg.Connection) -> bool:
    """True when a connection pooler (PgBouncer, …) stands between this client and Postgres.

    A pooler that hands one client's statements to several server sessions cannot pass a
    server's backend key on to its clients, so it sends one of its own: the pid the
    connection was greeted with is then not the pid of the backend running its statements.
    """
    backend_pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return conn.get_server_pid() != backend_pid


async def connect(dsn: str, *, timeout_s: float = 5.0) -> asyncpg.Connection:
    """One connection of its own, for a short task (migrations, a probe), safe behind a pooler.

    Its statements are unnamed (no statement cache): a named prepared statement lives in
    one server session, which a transaction pooler does not keep for this client.
    """
    return await asyncpg.connect(dsn, timeout=timeout_s, statement_cache_size=0)


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

    Behind a transaction pooler (found by `behind_pooler` on a first connection) the pool
    keeps no prepared statements, and sets no session timeout: the server session a `SET`
    reaches is shared with other clients (the pooler's own `idle_transaction_timeout`
    does that job there). Direct connections keep asyncpg's statement cache.
    """
    try:
        probe = await connect(dsn, timeout_s=connect_timeout_s)
        try:
            pooled = await behind_pooler(probe)
        finally:
            await probe.close()
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"postgres is unreachable: {exc.__class__.__name__}") from exc

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        if idle_in_transaction_s is not None and not pooled:
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
            statement_cache_size=0 if pooled else STATEMENT_CACHE_SIZE,
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"postgres is unreachable: {exc.__class__.__name__}") from exc
    assert pool is not None
    return pool


async def ping(db: Db) -> None:
    """One round trip: raises a `CONNECTION_ERRORS` error when Postgres does not answer."""
    await db.fetchval("SELECT 1")
