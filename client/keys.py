"""`tidings keys`: create, list and revoke API keys, directly in the database.

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

from core import keys
from core.embedded import start_embedded
from core.migrate import migrate_url
from core.settings import Settings, SettingsError

T = TypeVar("T")


def _with_database(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    settings, servers = start_embedded(settings)

    async def run() -> T:
        await migrate_url(settings.database_url, settings.migrations_dir)
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None
    finally:
        servers.close()


@click.group("keys")
def keys_group() -> None:
    """Manage API keys (each bound to a tenant)."""


@keys_group.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option("--name", required=True, help="What the key is for, e.g. 'ci'.")
def create(tenant: str, name: str) -> None:
    """Create a key and print it once; only its digest is stored."""
    new = _with_database(lambda conn: keys.create_key(conn, tenant, name))
    click.echo(new.secret)
    click.echo(f"key {new.id} for tenant {tenant!r} ({name}); it will not be shown again", err=True)


@keys_group.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def list_(tenant: str | None) -> None:
    """List keys (never their secrets)."""
    rows = _with_database(lambda conn: keys.list_keys(conn, tenant))
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['tenant']:<16} {row['name']:<16} {row['prefix']}…  {state}")


@keys_group.command("revoke")
@click.argument("key_id", type=click.UUID)
def revoke(key_id: uuid.UUID) -> None:
    """Revoke a key: the next request made with it is refused."""
    if not _with_database(lambda conn: keys.revoke_key(conn, key_id)):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")
