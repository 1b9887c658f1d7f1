"""What gave each open stream the right to exist, and ending it when that right ends.

A stream is opened with an API key, or with a stream token that a key minted. Revoking the
key ends every stream it opened, directly or through its tokens, on every server process:
`tidings keys revoke` publishes the key's id (`Names.revoked_channel`), and a recheck
every `RECHECK_S` finds what a lost notice missed. A token's stream also ends when the
token expires; its client reconnects with a fresh token and `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog

from tidings.core.db import keys as key_rows
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.server.streams.hub import Subscription

log = structlog.get_logger("tidings.authority")

RECHECK_S = 1.0


@dataclass(frozen=True)
class Authority:
    """The credential behind a request: its key's id (None with auth off) and, for a
    stream token, when it expires (wall clock)."""

    key_id: str | None = None
    expires_at: float | None = None


NO_AUTHORITY = Authority()


class Authorities:
    """The open streams of this process by the key behind them."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[Subscription]] = {}

    def hold(self, authority: Authority, subscription: Subscription) -> Callable[[], None]:
        """Track `subscription` under `authority`; the returned call stops tracking it."""
        key_id = authority.key_id
        if key_id is not None:
            self._by_key.setdefault(key_id, set()).add(subscription)
        expiry = None
        if authority.expires_at is not None:
            loop = asyncio.get_running_loop()
            delay_s = max(0.0, authority.expires_at - time.time())
            expiry = loop.call_at(loop.time() + delay_s, subscription.close)

        def release() -> None:
            if expiry is not None:
                expiry.cancel()
            if key_id is not None:
                held = self._by_key.get(key_id)
                if held is not None:
                    held.discard(subscription)
                    if not held:
                        del self._by_key[key_id]

        return release

    def revoke(self, key_id: str) -> int:
        """End every stream opened with key `key_id`; how many there were."""
        held = self._by_key.pop(key_id, set())
        for subscription in held:
            subscription.close()
        if held:
            log.info("streams.revoked", key_id=key_id, streams=len(held))
        return len(held)

    def key_ids(self) -> list[str]:
        """The keys behind the streams open now."""
        return list(self._by_key)

    def revoked(self, data: bytes) -> None:
        """A notice on the revoked channel: the id of a key just revoked."""
        self.revoke(data.decode(errors="replace"))


async def recheck(
    authorities: Authorities, pool: asyncpg.Pool, period_s: float = RECHECK_S
) -> None:
    """Every `period_s`, end the streams of keys revoked since (a lost notice's backstop)."""
    while True:
        await asyncio.sleep(period_s)
        key_ids = authorities.key_ids()
        if not key_ids:
            continue
        try:
            revoked = await key_rows.revoked_among(pool, key_ids=key_ids)
        except CONNECTION_ERRORS as exc:
            log.warning("authority.recheck_failed", error=repr(exc))
            continue
        for key_id in revoked:
            authorities.revoke(key_id)
