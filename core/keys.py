"""API keys: made once, shown once, stored as a digest, checked by digest."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from tidings.core.db import keys as statements

KEY_PREFIX = "tdk"


@dataclass(frozen=True)
class NewKey:
    """A key just created: `secret` is the only copy of the key there will ever be."""

    id: uuid.UUID
    tenant: str
    name: str
    secret: str


def digest(secret: str) -> bytes:
    """What is stored and looked up instead of the key itself."""
    return hashlib.sha256(secret.encode()).digest()


async def create_key(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, name: str) -> NewKey:
    """Create a key for `tenant`; the caller shows `secret` once and forgets it."""
    lookup = secrets.token_hex(4)
    # Hex keeps the three parts separable by "_" and the key selectable by a double click.
    secret = f"{KEY_PREFIX}_{lookup}_{secrets.token_hex(32)}"
    key_id = uuid.uuid4()
    await conn.execute(
        statements.INSERT_KEY, key_id, tenant, name, f"{KEY_PREFIX}_{lookup}", digest(secret)
    )
    return NewKey(key_id, tenant, name, secret)


async def tenant_of(conn: asyncpg.Connection | asyncpg.Pool, secret: str) -> str | None:
    """The tenant a live key belongs to, or None for an unknown or revoked key."""
    tenant: str | None = await conn.fetchval(statements.TENANT_OF_DIGEST, digest(secret))
    return tenant


async def list_keys(
    conn: asyncpg.Connection | asyncpg.Pool, tenant: str | None = None
) -> list[asyncpg.Record]:
    """Keys (never their secrets), for one tenant or all."""
    return list(await conn.fetch(statements.LIST_KEYS, tenant))


async def revoke_key(conn: asyncpg.Connection | asyncpg.Pool, key_id: uuid.UUID) -> bool:
    """Revoke a key; False when there is no live key with that id."""
    return await conn.fetchrow(statements.REVOKE_KEY, key_id) is not None
