"""Group lookup of API keys: the keys of concurrent requests are read with one query.

Every request still reads its key from Postgres after it arrives, so a key revoked
before a request is refused by that request (a cache could not promise that: revocation
writes Postgres directly and no server hears of it). What is shared is the round trip
(see `server.batching`): requests that arrive while a lookup is in flight are answered
together by the next one.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from tidings.core import keys
from tidings.core.db import keys as key_rows
from tidings.server.batching import Batcher


class KeyLookup:
    """Resolves API keys to tenants, batching the lookups that arrive together."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 500,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._pool = pool
        self._batcher: Batcher[bytes, tuple[str, str] | None] = Batcher(
            self._lookup, name="tidings-key-lookup", max_batch=max_batch, on_batch=on_batch
        )

    def start(self) -> None:
        """Start batching."""
        self._batcher.start()

    async def close(self) -> None:
        """Answer every lookup asked so far, then stop batching."""
        await self._batcher.close()

    async def tenant_of(self, secret: str) -> str | None:
        """The tenant of a live key, or None for an unknown or revoked one."""
        grant = await self.grant_of(secret)
        return None if grant is None else grant[0]

    async def grant_of(self, secret: str) -> tuple[str, str] | None:
        """(tenant, key id) of a live key, or None for an unknown or revoked one."""
        if not self._batcher.running:
            [grant] = await self._lookup([keys.digest(secret)])
            return grant
        return await self._batcher.call(keys.digest(secret))

    async def _lookup(self, digests: list[bytes]) -> list[tuple[str, str] | None]:
        rows = await key_rows.tenants_of_digests(self._pool, digests=digests)
        grants = {bytes(row["digest"]): (row["tenant"], str(row["id"])) for row in rows}
        return [grants.get(digest) for digest in digests]
