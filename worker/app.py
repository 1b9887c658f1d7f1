"""A worker process: ARQ consumers for each queue, plus the services around them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from contextlib import AsyncExitStack
from typing import Any

import structlog
from arq.worker import Worker, func

from core import queue
from core.db import jobs, registry
from core.db.pool import create_pool
from core.embedded import start_embedded
from core.logging import configure_logging
from core.migrate import migrate_url
from core.settings import Settings
from core.submission import Submitter
from worker.cancellation import CancelListener
from worker.heartbeat import Heartbeat
from worker.registry import TaskRegistry
from worker.reporter import Reporter
from worker.runtime import QUEUE_KEY, RUNTIME_KEY, Runtime, run_arq_job
from worker.scheduler import CronScheduler

log = structlog.get_logger("tidings.worker")

# ARQ's own timeout and retry count are set out of the way: the runtime enforces each
# job's timeout and decides retries, and the claim fences ARQ's redeliveries.
ARQ_FUNCTION_TIMEOUT_S = 24 * 3600
ARQ_MAX_TRIES = 1_000_000


def new_worker_id() -> str:
    """A worker id that says where it runs and stays unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def arq_worker(settings: Settings, names: queue.Names, queue_name: str, runtime: Runtime) -> Worker:
    """One ARQ consumer of `queue_name`, running every delivery through the runtime."""
    return Worker(
        functions=[
            func(
                run_arq_job,
                name=queue.RUN_FUNCTION,
                timeout=ARQ_FUNCTION_TIMEOUT_S,
                max_tries=ARQ_MAX_TRIES,
            )
        ],
        queue_name=names.queue(queue_name),
        redis_settings=queue.redis_settings(settings.redis_url),
        ctx={RUNTIME_KEY: runtime, QUEUE_KEY: queue_name},
        max_jobs=settings.concurrency,
        keep_result=0,
        poll_delay=settings.poll_delay_s,
        handle_signals=False,
        job_serializer=queue.arq_serializer,
        job_deserializer=queue.arq_deserializer,
    )


async def reconcile(runtime: Runtime, queues: tuple[str, ...]) -> int:
    """Give every waiting job Postgres holds a token; ARQ ignores ids it already has."""
    enqueued = 0
    for row in await runtime.pool.fetch(jobs.WAITING_JOBS, list(queues)):
        token = queue.Token(row["id"], row["attempt"], row["queue"], row["run_at"])
        if await queue.enqueue(runtime.redis, runtime.names, token):
            enqueued += 1
    return enqueued


async def run_hooks(registry: TaskRegistry, phase: str, resources: dict[str, Any]) -> None:
    """Run the worker's startup or shutdown hooks in declaration order."""
    for hook in registry.hooks["startup" if phase == "startup" else "shutdown"]:
        await hook(resources)


async def run_worker(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run until `stop` is set, then drain in-flight jobs and close everything."""
    async with AsyncExitStack() as stack:
        settings, embedded = start_embedded(settings)
        stack.callback(embedded.close)
        await migrate_url(settings.database_url, settings.migrations_dir)
        task_registry = TaskRegistry.from_modules(settings.tasks)
        pool = await create_pool(settings.database_url, max_size=max(4, settings.concurrency // 4))
        stack.push_async_callback(pool.close)
        redis = await queue.connect(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        names = queue.Names(settings.namespace)
        await registry.upsert_tasks(pool, [spec.registry_row() for spec in task_registry])
        reporter = Reporter(pool, redis, names)
        reporter.start()
        stack.push_async_callback(reporter.close)
        worker_id = new_worker_id()
        runtime = Runtime(worker_id, pool, redis, names, task_registry, reporter)
        await run_hooks(task_registry, "startup", runtime.resources)
        stack.push_async_callback(run_hooks, task_registry, "shutdown", runtime.resources)
        cancels = CancelListener(settings.redis_url, names.cancel_channel, runtime.cancel)
        cancels.start()
        stack.push_async_callback(cancels.stop)
        heartbeat = Heartbeat(
            pool,
            worker_id,
            queues=settings.queues,
            concurrency=settings.concurrency,
            period_s=settings.heartbeat_s,
            on_cancel_requested=cancels.cancel_all,
        )
        await heartbeat.start()
        stack.push_async_callback(heartbeat.stop)
        recovered = await reconcile(runtime, settings.queues)
        cron = CronScheduler(Submitter(pool, redis, names), list(task_registry))
        await cron.start()
        stack.push_async_callback(cron.stop)
        consumers = [arq_worker(settings, names, q, runtime) for q in settings.queues]
        log.info(
            "worker.ready",
            worker_id=worker_id,
            queues=list(settings.queues),
            tasks=sorted(spec.name for spec in task_registry),
            reenqueued=recovered,
        )
        if ready is not None:
            ready.set()
        await _consume_until(consumers, stop, settings.drain_timeout_s)
        log.info("worker.stopped", worker_id=worker_id)


async def _consume_until(consumers: list[Worker], stop: asyncio.Event, drain_s: float) -> None:
    mains = [asyncio.create_task(c.async_run(), name="arq-consumer") for c in consumers]
    stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*mains, stopping], return_when=asyncio.FIRST_COMPLETED)
    for main in mains:
        main.cancel()
    await asyncio.gather(*mains, return_exceptions=True)
    for main in done - {stopping}:
        if not main.cancelled() and main.exception() is not None:
            raise main.exception()  # type: ignore[misc]
    stopping.cancel()
    in_flight: list[asyncio.Task[Any]] = [t for c in consumers for t in c.tasks.values()]
    if in_flight:
        log.info("worker.draining", jobs=len(in_flight), timeout_s=drain_s)
        _, pending = await asyncio.wait(in_flight, timeout=drain_s)
        for leftover in pending:
            leftover.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for consumer in consumers:
        await consumer.close()


def main(environ: dict[str, str] | None = None) -> None:
    """Entry point of `python -m worker`: run until SIGINT or SIGTERM."""
    settings = Settings.from_env(environ)
    configure_logging(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(run())
