"""The example's tasks, run by the worker: `TIDINGS_TASKS` names this module."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg

from tidings.worker import Job, on_shutdown, on_startup, task

WORDS_PER_STEP = 200


@on_startup
async def open_database(resources: dict[str, Any]) -> None:
    """The example's own pool, for tasks that read the application's tables (the same
    database as tidings': `TIDINGS_DATABASE_URL`)."""
    resources["db"] = await asyncpg.create_pool(
        os.environ["TIDINGS_DATABASE_URL"], min_size=1, max_size=2
    )


@on_shutdown
async def close_database(resources: dict[str, Any]) -> None:
    await resources["db"].close()


@task(max_attempts=5)
async def send_welcome_email(job: Job, user_id: int) -> dict[str, str]:
    """ "Send" the welcome email: record it in `welcome_emails`. The user row is there:
    the job was committed in the same transaction as the user."""
    db: asyncpg.Pool = job.resources["db"]
    email = await db.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    if email is None:
        raise LookupError(f"no user {user_id}")  # cannot happen: see the transaction
    await db.execute(
        "INSERT INTO welcome_emails (user_id, job_id) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO NOTHING",
        user_id,
        job.id,
    )
    return {"sent_to": email}


@task(timeout=600)
async def count_words(job: Job, path: str, step_delay_s: float = 0.05) -> dict[str, Any]:
    """Count the words of an uploaded file, reporting progress every few hundred words."""
    text = await asyncio.to_thread(Path(path).read_text, errors="replace")
    words = text.split()
    steps = max(1, -(-len(words) // WORDS_PER_STEP))
    counts: dict[str, int] = {}
    for step in range(steps):
        for word in words[step * WORDS_PER_STEP : (step + 1) * WORDS_PER_STEP]:
            counts[word.lower()] = counts.get(word.lower(), 0) + 1
        await job.progress(step + 1, steps, f"{min(len(words), (step + 1) * WORDS_PER_STEP)} words")
        await asyncio.sleep(step_delay_s)  # a stand-in for real work per chunk
    top = sorted(counts.items(), key=lambda item: -item[1])[:5]
    return {"words": len(words), "top": top}
