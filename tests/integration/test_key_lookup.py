"""Group lookup of API keys: concurrent requests share a query, each gets its own answer."""

from __future__ import annotations

import asyncio

import asyncpg

from tidings.core import keys
from tidings.server.key_lookup import KeyLookup


class Batches:
    """The size of every lookup the batcher ran."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, size: int) -> None:
        self.sizes.append(size)


async def test_concurrent_lookups_share_queries_and_each_gets_its_tenant(
    pool: asyncpg.Pool,
) -> None:
    alice = await keys.create_key(pool, "alice", "a")
    bob = await keys.create_key(pool, "bob", "b")
    revoked = await keys.create_key(pool, "alice", "old")
    assert await keys.revoke_key(pool, revoked.id)
    secrets = [alice.secret, bob.secret, revoked.secret, "tdk_unknown_00", alice.secret] * 4
    batches = Batches()
    lookup = KeyLookup(pool, on_batch=batches)
    lookup.start()
    try:
        tenants = await asyncio.gather(*(lookup.tenant_of(secret) for secret in secrets))
    finally:
        await lookup.close()

    assert tenants == ["alice", "bob", None, None, "alice"] * 4
    assert sum(batches.sizes) == len(secrets) and len(batches.sizes) < len(secrets)


async def test_a_key_revoked_before_a_lookup_is_refused_by_it(pool: asyncpg.Pool) -> None:
    key = await keys.create_key(pool, "carol", "laptop")
    lookup = KeyLookup(pool)
    lookup.start()
    try:
        assert await lookup.tenant_of(key.secret) == "carol"
        assert await keys.revoke_key(pool, key.id)
        assert await lookup.tenant_of(key.secret) is None
    finally:
        await lookup.close()
    # Closed, it still answers, one query per lookup.
    assert await lookup.tenant_of(key.secret) is None
