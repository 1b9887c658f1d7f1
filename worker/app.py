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
import uvloop
from redis.exceptions import RedisError

from tidings.core import queue, task_logs
from tidings.core.db import jobs, tasks
from tidings.core.db.migrate import migrate_url
from tidings.core.db.pool import CONNECTION_ERRORS, create_pool
from tidings.core.embedded import start_embedded
from tidings.core.logging import configure_logging
from tidings.core.redis_url import arq_settings
from tidings.core.settings import Settings, settings_or_exit
from tidings.core.submission import Submitter
from tidings.worker.committed import CommitListener
from tidings.worker.consumers import Consumers
from tidings.worker.heartbeat import Heartbeat
from tidings.worker.maintenance import Reaper, hand_back
from tidings.worker.metrics import WorkerMetrics
from tidings.worker.periodic import Periodic
from tidings.worker.pickup import PushWorker
from tidings.worker.reconciler import Reconciler
from tidings.worker.registry import TaskRegistry
from tidings.worker.reporter import Reporter
from tidings.worker.retention import Pruner
from tidings.worker.runtime import Runtime
from tidings.worker.scheduler import CronScheduler
from tidings.worker.signals import SignalListener

log = structlog.get_logger("tidings.worker")

HAND_BACK_TIMEOUT_S = 10.0
HAND_BACK_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *CONNECTION_ERRORS)


def new_worker_id() -> str:
    """A worker id that says where it runs and stays unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def arq_worker(
    settings: Settings, names: queue.Names, queue_name: str, runtime: Runtime
) -> PushWorker:
    """One ARQ consumer of `queue_name`, running every token it takes through the runtime."""
    return PushWorker(
        queue_name=names.queue(queue_name),
        redis_settings=arq_settings(settings.redis_url),
        max_jobs=settings.concurrency,
        # Running tokens stay in the queue: read past them to find due ones.
        queue_read_limit=settings.concurrency * 4,
        fallback_s=settings.poll_delay_s,
        runtime=runtime,
        queue=queue_name,
        handle_signals=False,
        job_serializer=queue.arq_serializer,
        job_deserializer=queue.arq_deserializer,
    )


async def run_hooks(registry: TaskRegistry, phase: str, resources: dict[str, Any]) -> None:
    """Run the worker's startup or shutdown hooks in declaration order."""
    for hook in registry.hooks["startup" if phase == "startup" else "shutdown"]:
        await hook(resources)


async def run_worker(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run until `stop` is set, then drain in-flight jobs, hand back the rest, and close."""
    async with AsyncExitStack() as stack:
        settings, embedded = start_embedded(settings)
        stack.callback(embedded.close)
        await migrate_url(settings.database_url)
        task_registry = TaskRegistry.from_modules(settings.tasks)
        pool = await create_pool(
            settings.database_url,
            max_size=max(4, settings.concurrency // 4),
            connect_timeout_s=settings.db_timeout_s,
            # Within the reap delay, a frozen worker's open transaction is ended, so its
            # locks cannot stop the reaper that takes its jobs back.
            idle_in_transaction_s=settings.reap_after_s / 2,
        )
        stack.push_async_callback(pool.close)
        redis = await queue.connect(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        names = queue.Names(settings.namespace)
        await tasks.upsert_tasks(pool, [spec.registry_row() for spec in task_registry])
        metrics = WorkerMetrics()
        reporter = Reporter(pool, redis, names, on_batch=metrics.record_batch)
        reporter.start()
        stack.push_async_callback(reporter.close)
        worker_id = new_worker_id()
        runtime = Runtime(
            worker_id,
            pool,
            redis,
            names,
            task_registry,
            reporter,
            on_outcome=lambda task, q, outcome: metrics.jobs.labels(task, q, outcome).inc(),
            task_log_level=task_logs.level_of(settings.task_log_level),
            task_log_max=settings.task_log_max,
            max_args_bytes=settings.max_args_bytes,
        )
        stack.enter_context(task_logs.capturing_stdlib())
        await run_hooks(task_registry, "startup", runtime.resources)
        stack.push_async_callback(run_hooks, task_registry, "shutdown", runtime.resources)

        reconciler = Periodic(
            "reconciler",
            settings.reconcile_s,
            Reconciler(pool, redis, names, settings.queues).run_once,
        )
        reaper = Periodic(
            "reaper",
            settings.heartbeat_s,
            Reaper(pool, redis, names, silence_s=settings.reap_after_s).run_once,
        )
        pruner = Periodic(
            "pruner",
            settings.prune_period_s,
            Pruner.from_settings(
                pool,
                settings,
                on_pruned=metrics.record_pruned,
                on_oldest=metrics.record_oldest_finished,
            ).run_once,
        )
        consumers = Consumers(
            {q: arq_worker(settings, names, q, runtime) for q in settings.queues},
            on_restart=reconciler.poke,
        )
        signals = SignalListener(
            settings.redis_url,
            names,
            settings.queues,
            cancel=runtime.cancel,
            wake=consumers.wake,
            # Redis came back (possibly empty): restore tokens at once, not next period.
            on_connect=reconciler.poke,
        )
        heartbeat = Heartbeat(
            pool,
            worker_id,
            queues=settings.queues,
            concurrency=settings.concurrency,
            tasks=runtime.task_names,
            period_s=settings.heartbeat_s,
            on_cancel_requested=signals.cancel_all,
            running=lambda: set(runtime.running),
            on_lost=runtime.abandon,
        )
        await heartbeat.start()
        stack.push_async_callback(heartbeat.stop)
        metrics.track(lambda: len(runtime.running), heartbeat.age_s)
        if settings.worker_metrics_port:
            stack.callback(metrics.serve(settings.host, settings.worker_metrics_port))
        committed = CommitListener(
            settings.listen_database_url,
            redis,
            names,
            settings.queues,
            connect_timeout_s=settings.db_timeout_s,
            # Notices sent while it was not listening are found by the reconciler.
            on_connect=reconciler.poke,
        )
        for service in (signals, reconciler, reaper, pruner, committed):
            service.start()
            stack.push_async_callback(service.stop)
        cron = CronScheduler(Submitter(pool, redis, names), list(task_registry))
        await cron.start()
        stack.push_async_callback(cron.stop)

        consumers.start()
        log.info(
            "worker.ready",
            worker_id=worker_id,
            queues=list(settings.queues),
            tasks=sorted(spec.name for spec in task_registry),
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("worker.stopping", worker_id=worker_id)
        await consumers.stop_taking_jobs()
        await consumers.drain(settings.drain_timeout_s)
        await hand_back_unfinished(runtime)
        await consumers.close()
        log.info("worker.stopped", worker_id=worker_id)


async def hand_back_unfinished(runtime: Runtime) -> None:
    """Re-queue what this worker still holds as running, so another worker runs it."""
    try:
        async with asyncio.timeout(HAND_BACK_TIMEOUT_S):
            await runtime.reporter.flush()
            rows = await jobs.requeue_own(runtime.pool, worker_id=runtime.worker_id)
    except HAND_BACK_ERRORS as exc:
        # Postgres is away: the reaper re-queues these jobs once this worker is silent.
        log.warning("worker.hand_back_failed", error=repr(exc))
        return
    try:
        await hand_back(runtime.redis, runtime.names, rows, "worker_shutdown")
    except (RedisError, OSError) as exc:
        log.warning("worker.hand_back_failed", jobs=len(rows), error=repr(exc))


def main(environ: dict[str, str] | None = None) -> None:
    """Entry point of `python -m worker`: run until SIGINT or SIGTERM."""
    settings = settings_or_exit(environ)
    configure_logging(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    uvloop.run(run())  # the same loop uvicorn picks for the server
