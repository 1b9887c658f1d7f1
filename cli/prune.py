"""What `tidings prune` does: delete the finished jobs past their retention now, or show them.

It runs the workers' pruner once, against the database directly, with the settings of the
environment (retentions and batch bounds). It waits for a worker's batch in progress
rather than leaving the work to it, so that what it prints is what it deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import click

from tidings.core.db.migrate import migrate_url
from tidings.core.db.pool import CONNECTION_ERRORS, create_pool
from tidings.core.embedded import start_embedded
from tidings.core.errors import Unavailable
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings
from tidings.worker.retention import Pruned, Pruner

T = TypeVar("T")

# What "the database could not be used" looks like from here: one line, exit status 1.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    Unavailable,
    asyncpg.PostgresError,
)


def _with_pruner(settings: Settings, action: Callable[[Pruner], Awaitable[T]]) -> T:
    configure_logging(settings)  # to stderr: stdout carries the report alone
    settings, servers = start_embedded(settings)

    async def run() -> T:
        await migrate_url(settings.database_url)
        pool = await create_pool(
            settings.database_url, min_size=1, max_size=1, connect_timeout_s=settings.db_timeout_s
        )
        try:
            return await action(Pruner.from_settings(pool, settings, wait_for_lock=True))
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except DATABASE_ERRORS as exc:
        raise click.ClickException(f"cannot prune: {exc}") from None
    finally:
        servers.close()


def prune(settings: Settings) -> str:
    """Delete every expired job now; what was deleted, in one line."""
    pruned: Pruned = _with_pruner(settings, lambda pruner: pruner.run_once())
    if not pruned.total_jobs:
        return "nothing to prune"
    by_status = ", ".join(f"{status} {count}" for status, count in sorted(pruned.jobs.items()))
    batches = f"{pruned.batches} batch" + ("es" if pruned.batches > 1 else "")
    return f"pruned {pruned.total_jobs} jobs ({by_status}) and {pruned.events} events in {batches}"


def preview(settings: Settings) -> str:
    """What a prune would delete now, per status, with the oldest finish; deletes nothing."""
    rows = _with_pruner(settings, lambda pruner: pruner.expired())
    if not rows:
        return "nothing to prune"
    lines = [
        f"would prune {sum(row['jobs'] for row in rows)} jobs"
        f" and {sum(row['events'] for row in rows)} events:"
    ]
    lines += [
        f"  {row['status']:<10} {row['jobs']:>8} jobs {row['events']:>10} events"
        f"  oldest finished {row['oldest'].isoformat(timespec='seconds')}"
        for row in rows
    ]
    return "\n".join(lines)
