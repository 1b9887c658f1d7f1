"""Redis locations as URLs: `redis://`, `rediss://`, `unix://`, and Sentinel.

A Sentinel deployment is written `redis+sentinel://host1:26379,host2:26379/mymaster?db=0`
(optionally with `user:password@` before the hosts, used for the master). ARQ and the
pub/sub clients then ask the sentinels for the current master, so a failover moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from arq.connections import RedisSettings
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelLocation:
    hosts: list[tuple[str, int]]
    master: str
    database: int
    username: str | None
    password: str | None


def parse_sentinel(url: str) -> SentinelLocation | None:
    """The sentinels and master name of a `redis+sentinel://` URL, else None."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    credentials, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.partition(":")
        hosts.append((host, int(port or 26379)))
    master = parts.path.strip("/") or "mymaster"
    database = int(parse_qs(parts.query).get("db", ["0"])[0])
    return SentinelLocation(
        hosts, master, database, unquote(username) or None, unquote(password) or None
    )


def arq_settings(url: str) -> RedisSettings:
    """ARQ connection settings for any supported Redis URL."""
    sentinel = parse_sentinel(url)
    if sentinel is None:
        settings = RedisSettings.from_dsn(url)
    else:
        settings = RedisSettings(
            host=sentinel.hosts,
            sentinel=True,
            sentinel_master=sentinel.master,
            database=sentinel.database,
            username=sentinel.username,
            password=sentinel.password,
        )
    settings.conn_timeout = 2
    settings.conn_retries = 1
    return settings


def client(url: str) -> aioredis.Redis:
    """A redis-py asyncio client (for pub/sub) for any supported Redis URL."""
    sentinel = parse_sentinel(url)
    if sentinel is None:
        plain: aioredis.Redis = aioredis.Redis.from_url(url)
        return plain
    sentinels = Sentinel(sentinel.hosts)  # type: ignore[no-untyped-call]
    master: aioredis.Redis = sentinels.master_for(
        sentinel.master,
        db=sentinel.database,
        username=sentinel.username,
        password=sentinel.password,
    )
    return master
