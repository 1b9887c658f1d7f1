"""The Redis fast path: ARQ queues (what to run next) and pub/sub (who to tell now).

Nothing here is the truth: a job or event that Redis loses is recovered from Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.constants import expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_unix_ms
from redis.asyncio.client import Pipeline

from tidings.core import serialization
from tidings.core.events import run_events
from tidings.core.redis_url import arq_settings as redis_url_settings

RUN_FUNCTION = "tidings.run"
EVENTS_PER_MESSAGE = 1_000


@dataclass(frozen=True)
class Names:
    """Redis key and channel names, under one namespace so deployments can share a Redis."""

    namespace: str

    def queue(self, queue: str) -> str:
        return f"{self.namespace}:queue:{queue}"

    @property
    def events_channel(self) -> str:
        return f"{self.namespace}:events"

    @property
    def cancel_channel(self) -> str:
        return f"{self.namespace}:cancel"

    @property
    def revoked_channel(self) -> str:
        """Where servers hear that an API key was revoked (its id)."""
        return f"{self.namespace}:revoked"

    def wake_channel(self, queue: str) -> str:
        """Where workers of `queue` hear that a token is due now."""
        return f"{self.namespace}:wake:{queue}"

    def presence_key(self, queue: str) -> str:
        """A key the reconcilers of `queue` keep set: when it is gone, Redis lost what
        tidings wrote to it (one per queue: workers may serve different queues)."""
        return f"{self.namespace}:present:{queue}"


@dataclass(frozen=True)
class Token:
    """An ARQ delivery that makes a worker claim the best due job of `queue`."""

    job_id: uuid.UUID | str | None
    attempt: int
    queue: str
    run_at: datetime | None = None
    arq_id: str | None = None

    def __post_init__(self) -> None:
        # A token for no particular job gets its random id once: `key` names both the ARQ
        # payload and the queue entry, which must agree or ARQ drops the token as expired.
        if self.arq_id is None and self.job_id is None:
            object.__setattr__(self, "arq_id", arq_job_id(uuid.uuid4().hex, self.attempt))

    @property
    def key(self) -> str:
        return self.arq_id or arq_job_id(self.job_id or uuid.uuid4().hex, self.attempt)


def arq_job_id(job_id: uuid.UUID | str, attempt: int) -> str:
    """ARQ job ids carry the attempt, so a re-enqueue never collides with an old ARQ key."""
    return f"{job_id}:{attempt}"


def arq_serializer(value: Any) -> bytes:
    """ARQ's job payload serializer: JSON, so nothing read back from Redis can run code."""
    return serialization.dumps(value)


def arq_deserializer(data: bytes) -> Any:
    """The inverse of `arq_serializer`."""
    return serialization.loads(data)


async def connect(redis_url: str) -> ArqRedis:
    """An ARQ Redis pool using the JSON serializer."""
    return await create_pool(
        redis_url_settings(redis_url),
        job_serializer=arq_serializer,
        job_deserializer=arq_deserializer,
    )


async def enqueue(redis: ArqRedis, names: Names, token: Token) -> bool:
    """Put a token on its ARQ queue unless one with its id is there; False if it was."""
    job = await redis.enqueue_job(
        RUN_FUNCTION,
        _token_job_id(token),
        token.attempt,
        _job_id=token.key,
        _queue_name=names.queue(token.queue),
        _defer_until=token.run_at,
    )
    return job is not None


async def enqueue_fresh(
    redis: ArqRedis,
    names: Names,
    tokens: Sequence[Token],
    events: Iterable[dict[str, Any]] = (),
) -> None:
    """Put tokens with never-used ids on their queues in one pipelined round trip.

    ARQ's `enqueue_job` first checks that the id is free (WATCH, EXISTS, MULTI); a job that
    was just created cannot have a token yet, so the check is skipped here. Workers of a
    queue with a token due now are woken, and `events` published, in the same round trip.
    """
    now_ms = timestamp_ms()
    due_now: set[str] = set()
    async with redis.pipeline(transaction=False) as pipe:
        for token in tokens:
            score = to_unix_ms(token.run_at) if token.run_at is not None else now_ms
            score = max(score, now_ms)
            payload = serialize_job(
                RUN_FUNCTION,
                (_token_job_id(token), token.attempt),
                {},
                None,
                now_ms,
                serializer=arq_serializer,
            )
            pipe.psetex(job_key_prefix + token.key, score - now_ms + expires_extra_ms, payload)
            pipe.zadd(names.queue(token.queue), {token.key: score})
            if score <= now_ms:
                due_now.add(token.queue)
        for queue in due_now:
            pipe.publish(names.wake_channel(queue), b"")
        add_events(pipe, names, events)
        await pipe.execute()


async def restore_missing(redis: ArqRedis, names: Names, tokens: Sequence[Token]) -> int:
    """Put back the tokens Redis does not hold, two pipelined round trips for all of them;
    how many were missing. One put back twice at once (two reconcilers) is still one
    token: its key and queue entry are set, not added."""
    async with redis.pipeline(transaction=False) as pipe:
        for token in tokens:
            pipe.exists(job_key_prefix + token.key)
        present = await pipe.execute()
    missing = [token for token, exists in zip(tokens, present, strict=True) if not exists]
    if missing:
        await enqueue_fresh(redis, names, missing)
    return len(missing)


async def wake(redis: ArqRedis, names: Names, queues: Iterable[str]) -> None:
    """Tell idle workers of `queues` to look for tokens now."""
    async with redis.pipeline(transaction=False) as pipe:
        for queue in set(queues):
            pipe.publish(names.wake_channel(queue), b"")
        await pipe.execute()


def _token_job_id(token: Token) -> str | None:
    return None if token.job_id is None else str(token.job_id)


async def publish_events(redis: ArqRedis, names: Names, events: Iterable[dict[str, Any]]) -> None:
    """Tell subscribers about committed events, in one pipelined round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        add_events(pipe, names, events)
        await pipe.execute()


def add_events(pipe: Pipeline, names: Names, events: Iterable[dict[str, Any]]) -> None:
    """Queue PUBLISHes of `events` on `pipe`: each message is a JSON array, in order.

    An entry is an event, or a run of one attempt's events (`core.model.run_events`).
    A batch goes out as one message (up to `EVENTS_PER_MESSAGE` entries), so a worker's
    flush of thousands of progress events costs one PUBLISH, not thousands.
    """
    batch = list(events)
    for start in range(0, len(batch), EVENTS_PER_MESSAGE):
        chunk = batch[start : start + EVENTS_PER_MESSAGE]
        pipe.publish(names.events_channel, serialization.dumps(chunk))


def decode_events(message: bytes) -> list[dict[str, Any]]:
    """The events of one message on the events channel, runs expanded (see `add_events`).

    Anything but a JSON array of objects raises ValueError.
    """
    entries = serialization.loads(message)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("an events message is a JSON array of objects")
    events: list[dict[str, Any]] = []
    for entry in entries:
        if "events" in entry:
            events.extend(run_events(entry))
        else:
            events.append(entry)
    return events
