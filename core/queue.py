"""The Redis fast path: ARQ queues (what to run next) and pub/sub (who to tell now).

Nothing here is the truth: a job or event that Redis loses is recovered from Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from core import serialization

RUN_FUNCTION = "tidings.run"


@dataclass(frozen=True)
class Names:
    """Redis key and channel names, under one namespace so deployments can share a Redis."""

    namespace: str

    def queue(self, queue: str) -> str:
        return f"{self.namespace}:queue:{queue}"

    @property
    def events_channel(self) -> str:
        return f"{self.namespace}:events"


def arq_job_id(job_id: uuid.UUID | str, attempt: int) -> str:
    """ARQ job ids carry the attempt, so a re-enqueue never collides with an old ARQ key."""
    return f"{job_id}:{attempt}"


def redis_settings(redis_url: str) -> RedisSettings:
    """ARQ connection settings from a redis:// or unix:// URL."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = 2
    settings.conn_retries = 1
    return settings


def arq_serializer(value: Any) -> bytes:
    """ARQ's job payload serializer: JSON, never pickle."""
    return serialization.dumps(value)


def arq_deserializer(data: bytes) -> Any:
    """The inverse of `arq_serializer`."""
    return serialization.loads(data)


async def connect(redis_url: str) -> ArqRedis:
    """An ARQ Redis pool using the JSON serializer."""
    return await create_pool(
        redis_settings(redis_url),
        job_serializer=arq_serializer,
        job_deserializer=arq_deserializer,
    )


async def enqueue(
    redis: ArqRedis,
    names: Names,
    *,
    job_id: uuid.UUID | str,
    attempt: int,
    queue: str,
    defer_until: Any = None,
) -> bool:
    """Put a job attempt on its ARQ queue; False when that attempt is already there."""
    job = await redis.enqueue_job(
        RUN_FUNCTION,
        str(job_id),
        attempt,
        _job_id=arq_job_id(job_id, attempt),
        _queue_name=names.queue(queue),
        _defer_until=defer_until,
    )
    return job is not None


async def publish_events(redis: ArqRedis, names: Names, events: Iterable[dict[str, Any]]) -> None:
    """Tell subscribers about committed events, in one pipelined round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.publish(names.events_channel, serialization.dumps(event))
        await pipe.execute()
