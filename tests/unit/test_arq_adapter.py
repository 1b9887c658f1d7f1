"""The ARQ internals PushWorker relies on exist in the installed ARQ, by name."""

from __future__ import annotations

from importlib.metadata import version
from types import SimpleNamespace
from typing import cast

from arq.connections import RedisSettings
from arq.worker import Worker, func

from tidings.worker.arq_adapter import ArqConsumer, missing_internals
from tidings.worker.pickup import PushWorker
from tidings.worker.runtime import Runtime


async def nothing(ctx: dict[str, object]) -> None:
    """A function for ARQ's Worker to be built with."""


def a_worker(cls: type[Worker]) -> Worker:
    functions = [func(nothing, name="nothing")]
    return cls(functions, redis_settings=RedisSettings(), handle_signals=False)


def a_push_worker() -> PushWorker:
    return PushWorker(
        fallback_s=1.0,
        runtime=cast(Runtime, None),
        queue="default",
        redis_settings=RedisSettings(),
        handle_signals=False,
    )


async def test_the_installed_arq_has_every_internal_the_adapter_uses() -> None:
    missing = missing_internals(a_worker(Worker))
    assert missing == [], f"ARQ {version('arq')} lacks {missing}: update worker/arq_adapter.py"


async def test_a_worker_without_them_is_reported_by_name() -> None:
    stripped = SimpleNamespace(tasks=[], max_jobs=10)
    missing = missing_internals(stripped)  # type: ignore[arg-type]
    assert "_pool" in missing
    assert "job_counter" in missing
    assert "heart_beat()" in missing
    assert "tasks: dict[str, asyncio.Task]" in missing


async def test_slots_are_counted_as_arq_counts_them() -> None:
    consumer = a_worker(ArqConsumer)
    assert isinstance(consumer, ArqConsumer)
    assert consumer.free_slots == consumer.max_jobs
    consumer.job_counter += 3
    assert consumer.free_slots == consumer.max_jobs - 3
    consumer.finish_task()
    assert (consumer.free_slots, consumer.jobs_complete) == (consumer.max_jobs - 2, 1)


async def test_no_name_of_ours_shadows_one_of_arqs() -> None:
    """ARQ's own loop calls its methods by name (e.g. `record_health` from `heart_beat`):
    a same-named method here would silently replace it."""
    arq_names = set(dir(a_worker(Worker)))
    ours = {
        name for cls in (ArqConsumer, PushWorker) for name in vars(cls) if not name.startswith("__")
    }
    ours |= set(vars(a_push_worker())) - set(vars(a_worker(Worker)))
    assert ours & arq_names == {"main", "close"}  # the two overridden on purpose
