"""Statements on `api_keys`: only digests are stored, never a secret."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from tidings.core.db.pool import Db

_INSERT_KEY = """
INSERT INTO api_keys (id, tenant, name, prefix, digest) VALUES ($1, $2, $3, $4, $5)
RETURNING *
"""
_TENANT_OF_DIGEST = "SELECT tenant FROM api_keys WHERE digest = $1 AND revoked_at IS NULL"
_TENANTS_OF_DIGESTS = """
SELECT digest, tenant, id FROM api_keys WHERE digest = ANY($1::bytea[]) AND revoked_at IS NULL
"""
_REVOKED_AMONG = """
SELECT id::text FROM api_keys WHERE id = ANY($1::uuid[]) AND revoked_at IS NOT NULL
"""
_LIST_KEYS = """
SELECT id, tenant, name, prefix, created_at, revoked_at FROM api_keys
WHERE ($1::text IS NULL OR tenant = $1)
ORDER BY tenant, created_at
"""
_REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING *
"""


async def insert_key(
    db: Db, *, key_id: uuid.UUID, tenant: str, name: str, prefix: str, digest: bytes
) -> None:
    """Store a new key's digest and its public lookup prefix."""
    await db.execute(_INSERT_KEY, key_id, tenant, name, prefix, digest)


async def tenant_of_digest(db: Db, *, digest: bytes) -> str | None:
    """The tenant of the active key with this digest."""
    tenant: str | None = await db.fetchval(_TENANT_OF_DIGEST, digest)
    return tenant


async def tenants_of_digests(db: Db, *, digests: Sequence[bytes]) -> list[asyncpg.Record]:
    """(digest, tenant, id) of each active key among `digests`."""
    return list(await db.fetch(_TENANTS_OF_DIGESTS, list(set(digests))))


async def list_keys(db: Db, *, tenant: str | None) -> list[asyncpg.Record]:
    """Every key (of `tenant`, if given), without digests."""
    return list(await db.fetch(_LIST_KEYS, tenant))


async def revoke_key(db: Db, *, key_id: uuid.UUID) -> bool:
    """Revoke an active key; False if there is none with that id."""
    return await db.fetchrow(_REVOKE_KEY, key_id) is not None


async def revoked_among(db: Db, *, key_ids: Sequence[str]) -> list[str]:
    """The ids among `key_ids` of keys that have been revoked."""
    return [row["id"] for row in await db.fetch(_REVOKED_AMONG, list(key_ids))]
