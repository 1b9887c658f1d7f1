"""What `tidings keys` does: create, list and revoke API keys, directly in the database.

Keys are managed where the truth is (Postgres), by an operator with database access, so
there is no HTTP endpoint that can mint keys.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import click
from redis.exceptions import RedisError

from tidings.core import keys, redis_url
from tidings.core.db.migrate import migrate_url
from tidings.core.embedded import start_embedded
from tidings.core.queue import Names
from tidings.core.settings import Settings, SettingsError

T = TypeVar("T")


def _with_database(action: Callable[[asyncpg.Connection, Settings], Awaitable[T]]) -> T:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    settings, servers = start_embedded(settings)

    async def run() -> T:
        await migrate_url(settings.database_url)
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await action(conn, settings)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None
    finally:
        servers.close()


def create(tenant: str, name: str) -> keys.NewKey:
    """A new key for `tenant`; its secret is in the result and nowhere else."""
    return _with_database(lambda conn, _: keys.create_key(conn, tenant, name))


def listing(tenant: str | None) -> list[asyncpg.Record]:
    """Every key (of `tenant`, if given), newest first, without secrets."""
    return _with_database(lambda conn, _: keys.list_keys(conn, tenant))


def revoke(key_id: uuid.UUID) -> bool:
    """Revoke a key, and tell every server to end the streams it opened (they would also
    find out by themselves within a second); False when there is no active key with that
    id."""

    async def revoke_and_announce(conn: asyncpg.Connection, settings: Settings) -> bool:
        if not await keys.revoke_key(conn, key_id):
            return False
        redis = redis_url.client(settings.redis_url)
        try:
            await redis.publish(Names(settings.namespace).revoked_channel, str(key_id))
        except (RedisError, OSError) as exc:
            click.echo(
                f"could not tell the servers at once ({exc}); streams end within 1 s", err=True
            )
        finally:
            await redis.aclose()
        return True

    return _with_database(revoke_and_announce)
