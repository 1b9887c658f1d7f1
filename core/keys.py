"""API keys: made once, shown once, stored as a digest, checked by digest."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from tidings.core.db import keys as key_rows
from tidings.core.db.pool import Db

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


async def create_key(db: Db, tenant: str, name: str) -> NewKey:
    """Create a key for `tenant`; the caller shows `secret` once and forgets it."""
    lookup = secrets.token_hex(4)
    # Hex keeps the three parts separable by "_" and the key selectable by a double click.
    secret = f"{KEY_PREFIX}_{lookup}_{secrets.token_hex(32)}"
    key_id = uuid.uuid4()
    await key_rows.insert_key(
        db,
        key_id=key_id,
        tenant=tenant,
        name=name,
        prefix=f"{KEY_PREFIX}_{lookup}",
        digest=digest(secret),
    )
    return NewKey(key_id, tenant, name, secret)


async def tenant_of(db: Db, secret: str) -> str | None:
    """The tenant a live key belongs to, or None for an unknown or revoked key."""
    return await key_rows.tenant_of_digest(db, digest=digest(secret))


async def list_keys(db: Db, tenant: str | None = None) -> list[asyncpg.Record]:
    """Keys (never their secrets), for one tenant or all."""
    return await key_rows.list_keys(db, tenant=tenant)


async def revoke_key(db: Db, key_id: uuid.UUID) -> bool:
    """Revoke a key; False when there is no live key with that id."""
    return await key_rows.revoke_key(db, key_id=key_id)
