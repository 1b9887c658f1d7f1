"""A worker frozen inside a transaction does not keep its locks: Postgres ends it.

The reaper takes a transaction-scoped advisory lock so that one reaper acts at a time. A
worker stopped (SIGSTOP, a suspended VM) between taking it and committing would otherwise
hold it, and every row it had locked, for as long as it stays frozen: no reaper could take
its jobs back. Worker connections set `idle_in_transaction_session_timeout`.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tidings.core.db import locks
from tidings.core.db.pool import create_pool
from tidings.core.settings import Settings

WITHIN_S = 10.0


async def test_a_lock_held_by_a_frozen_transaction_is_released(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    frozen_pool = await create_pool(settings.database_url, max_size=1, idle_in_transaction_s=0.2)
    try:
        async with frozen_pool.acquire() as frozen:
            transaction = frozen.transaction()
            await transaction.start()
            assert await locks.try_transaction_lock(frozen, locks.REAPER)
            # The "frozen" connection sends nothing more. Another reaper waits it out.
            async with asyncio.timeout(WITHIN_S):
                while True:
                    async with pool.acquire() as other, other.transaction():
                        if await locks.try_transaction_lock(other, locks.REAPER):
                            break
                    await asyncio.sleep(0.05)
            # The frozen session was ended by Postgres, not merely outlived.
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                await frozen.fetchval("SELECT 1")
    finally:
        frozen_pool.terminate()
