"""Raw ARQ, the baseline: a worker process with a noop and a pickup probe, and their enqueuers.

It is plain ARQ configured as a user would for a fair comparison: a JSON serializer, the
same max_jobs and poll_delay as the tidings worker, ARQ's defaults for everything else
(results kept in Redis, where tidings keeps them in Postgres), and the INFO logging the
`arq` command sets up (a line per job start and finish, as tidings logs its own).

Run as `python -m bench.raw_arq --redis-url URL --queue NAME --max-jobs N --poll-delay S`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import signal
import sys
import time
import uuid
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import orjson
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.logs import default_log_config
from arq.utils import timestamp_ms
from arq.worker import Worker, func

READY_LINE = "raw_arq.ready"
NOOP = "noop"
PICKUP = "pickup"
SPANS_KEY = "bench_spans"
DONE_TTL_S = 3600


def queue_name(namespace: str) -> str:
    """The raw ARQ queue of a run, under the run's Redis namespace."""
    return f"{namespace}:raw"


def serializer(value: Any) -> bytes:
    return orjson.dumps(value)


def deserializer(data: bytes) -> Any:
    return orjson.loads(data)


async def connect(redis_url: str) -> ArqRedis:
    """An ARQ pool with the JSON serializer, for enqueueing raw jobs."""
    return await create_pool(
        RedisSettings.from_dsn(redis_url), job_serializer=serializer, job_deserializer=deserializer
    )


@dataclass
class Span:
    """When the first job of a batch started, when the last one ended, and how many ran."""

    first_start: float
    last_end: float = 0.0
    count: int = 0


async def noop(ctx: dict[str, Any], done_key: str, expected: int) -> None:
    """Do nothing; the batch's last job writes its span to `done_key` (one extra command)."""
    started = time.time()
    spans: dict[str, Span] = ctx[SPANS_KEY]
    span = spans.setdefault(done_key, Span(first_start=started))
    span.count += 1
    span.last_end = time.time()
    if span.count == expected:
        payload = {"first_start": span.first_start, "last_end": span.last_end, "count": span.count}
        await ctx["redis"].set(done_key, orjson.dumps(payload), ex=DONE_TTL_S)
        del spans[done_key]


async def pickup(ctx: dict[str, Any], sent_at: float, key: str) -> None:
    """Record how long after `sent_at` (just before enqueueing) this job started."""
    latency_s = time.time() - sent_at
    await ctx["redis"].rpush(key, latency_s)


@dataclass(frozen=True)
class Batch:
    """A batch of raw noop jobs: its id and where its span appears."""

    run: str
    done_key: str
    size: int


def new_batch(namespace: str, size: int) -> Batch:
    # Job ids carry the namespace, so the run's cleanup finds their ARQ keys.
    run = f"{namespace}-raw-{uuid.uuid4().hex[:8]}"
    return Batch(run, f"{queue_name(namespace)}:done:{run}", size)


async def enqueue_batch(redis: ArqRedis, queue: str, batch: Batch) -> None:
    """Enqueue the batch's noop jobs in one pipelined round trip, as tidings enqueues tokens."""
    now_ms = timestamp_ms()
    payload = serialize_job(
        NOOP, (batch.done_key, batch.size), {}, None, now_ms, serializer=serializer
    )
    async with redis.pipeline(transaction=False) as pipe:
        for index in range(batch.size):
            job_id = f"{batch.run}-{index}"
            pipe.psetex(job_key_prefix + job_id, expires_extra_ms, payload)
            pipe.zadd(queue, {job_id: now_ms})
        await pipe.execute()


async def wait_batch(redis: ArqRedis, batch: Batch, within_s: float) -> tuple[float, float]:
    """(first start, last end) of a batch, once its last job ran."""
    deadline = time.monotonic() + within_s
    while (raw := await redis.get(batch.done_key)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw ARQ batch of {batch.size} did not finish in {within_s:g}s")
        await asyncio.sleep(0.1)
    span = orjson.loads(raw)
    return span["first_start"], span["last_end"]


async def enqueue_probe(redis: ArqRedis, queue: str, namespace: str, key: str) -> None:
    """Enqueue one pickup probe the ordinary way (`enqueue_job`), stamped just before."""
    sent_at = time.time()
    await redis.enqueue_job(
        PICKUP, sent_at, key, _job_id=f"{namespace}-probe-{uuid.uuid4().hex}", _queue_name=queue
    )


async def wait_probes(redis: ArqRedis, key: str, count: int, within_s: float) -> list[float]:
    """The pickup latencies (s) the probes recorded under `key`, once all `count` ran."""
    deadline = time.monotonic() + within_s
    # redis-py types its commands as sync-or-async; on this client they are awaitables.
    while await cast(Awaitable[int], redis.llen(key)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw ARQ ran fewer than {count} pickup probes in {within_s:g}s")
        await asyncio.sleep(0.1)
    values = await cast(Awaitable[list[bytes]], redis.lrange(key, 0, -1))
    return [float(value) for value in values]


async def start(ctx: dict[str, Any]) -> None:
    # ARQ gives each job a copy of ctx; the spans dict made here is shared by all of them.
    ctx[SPANS_KEY] = {}
    print(READY_LINE, file=sys.stderr, flush=True)


async def serve(redis_url: str, queue: str, max_jobs: int, poll_delay_s: float) -> None:
    """Run the raw worker until SIGTERM or SIGINT."""
    worker = Worker(
        functions=[func(noop, name=NOOP), func(pickup, name=PICKUP)],
        queue_name=queue,
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=max_jobs,
        poll_delay=poll_delay_s,
        job_serializer=serializer,
        job_deserializer=deserializer,
        on_startup=start,
        handle_signals=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(worker.async_run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
    running.cancel()
    stopping.cancel()
    with suppress(asyncio.CancelledError):
        await running
    await worker.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_arq", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--max-jobs", type=int, required=True)
    parser.add_argument("--poll-delay", type=float, required=True)
    options = parser.parse_args(argv)
    logging.config.dictConfig(default_log_config(verbose=False))
    asyncio.run(serve(options.redis_url, options.queue, options.max_jobs, options.poll_delay))


if __name__ == "__main__":
    main()
