"""Following a Redis pub/sub channel for as long as the process lives.

A lost connection is not fatal: it reconnects with capped exponential backoff, and calls
`on_connect` after each (re)subscription so that the caller can recover what it missed
(from Postgres) while it was away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import suppress

import structlog
from redis.exceptions import RedisError

from tidings.core import redis_url

log = structlog.get_logger("tidings.subscriber")

MAX_RECONNECT_DELAY_S = 5.0


async def follow_channels(
    url: str,
    handlers: Mapping[str, Callable[[bytes], None]],
    on_connect: Callable[[], None] = lambda: None,
    on_disconnect: Callable[[], None] = lambda: None,
) -> None:
    """Deliver each channel's messages to its handler, over one connection, until cancelled."""
    delay = 0.1
    while True:
        client = redis_url.client(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*handlers)
            on_connect()
            delay = 0.1
            log.info("channel.subscribed", channels=sorted(handlers))
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                channel = message["channel"].decode()
                try:
                    handlers[channel](message["data"])
                except Exception:
                    # One message a handler cannot take must not end the subscription.
                    log.exception("channel.message_failed", channel=channel)
        except (RedisError, OSError) as exc:
            on_disconnect()
            log.warning("channel.disconnected", error=repr(exc), retry_s=delay)
        finally:
            with suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
