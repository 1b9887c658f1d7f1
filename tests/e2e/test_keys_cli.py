"""`tidings keys`: create prints the key once, list never shows it, revoke stops it."""

from __future__ import annotations

import uuid

import asyncpg

from tests.support.servers import run_cli as tidings
from tidings.core import keys
from tidings.core.settings import Settings


async def test_a_key_is_shown_once_listed_without_its_secret_and_revoked(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    code, out, err = await tidings(settings, "keys", "create", "--tenant", "acme", "--name", "ci")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("tdk_")
    assert await keys.tenant_of(pool, secret) == "acme"
    stored = await pool.fetchval(
        "SELECT count(*) FROM api_keys WHERE digest = $1", keys.digest(secret)
    )
    assert stored == 1
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE prefix = $1", secret) == 0

    code, listing, _ = await tidings(settings, "keys", "list", "--tenant", "acme")
    assert code == 0
    assert secret not in listing
    assert secret[:12] in listing  # the lookup prefix identifies it
    key_id = listing.split()[0]
    uuid.UUID(key_id)

    code, _, err = await tidings(settings, "keys", "revoke", key_id)
    assert code == 0, err
    assert await keys.tenant_of(pool, secret) is None
    code, _, err = await tidings(settings, "keys", "revoke", key_id)
    assert code == 1
    assert "no active key" in err
