"""`Tidings`: submit and read jobs from an application's own process, no HTTP between.

    async with Tidings() as tidings:          # settings from TIDINGS_* (embedded if unset)
        job = await tidings.submit("send_welcome", {"user_id": 7})
        async with session.begin():           # or an asyncpg connection in a transaction
            session.add(user)
            await tidings.submit("send_welcome", {"user_id": user.id}, connection=session)

A submission takes the path `POST /jobs` takes: the same envelope and args validation
against the task registry (`core/job_request.py`), the same idempotency, priorities,
delays and result cache (`core/submission.py`), the same errors (`TidingsError`s with
the HTTP status and code the server would answer), and returns the same job JSON. With
`connection=`, the job is written in the caller's transaction instead
(`core/transactional.py`): it exists, and runs, only if that transaction commits.

An instance is also a FastAPI dependency: `Depends(tidings)` returns it.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from tidings.core import queue
from tidings.core.db.migrate import migrate_url
from tidings.core.db.pool import create_pool
from tidings.core.embedded import start_embedded
from tidings.core.errors import Unavailable
from tidings.core.job_lookup import load_job
from tidings.core.job_request import batch_requests, job_request
from tidings.core.keyed_submission import submit_keyed
from tidings.core.model import job_json
from tidings.core.settings import Settings
from tidings.core.shapes import Job
from tidings.core.submission import Submitted, Submitter
from tidings.core.transactional import (
    committed_channel,
    submit_in_transaction,
    submit_many_in_transaction,
)
from tidings.core.validation import ArgsValidators


class Tidings:
    """Pools to Postgres and Redis, and the submit/read API over them."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tenant: str = "default",
        base_url: str = "",
        max_connections: int = 10,
    ) -> None:
        """`settings` default to `Settings.from_env()`. Jobs are submitted for `tenant`;
        `base_url` prefixes the `links` of the jobs returned (e.g. where the server or
        its mount answers: `/tidings`)."""
        self._settings = settings
        self.tenant = tenant
        self._base_url = base_url.rstrip("/")
        self._max_connections = max_connections
        self._stack: AsyncExitStack | None = None
        self._pool: asyncpg.Pool | None = None
        self._submitter: Submitter | None = None
        self._validators = ArgsValidators()

    @property
    def settings(self) -> Settings:
        """The settings in use (once started: with the embedded servers' URLs filled in)."""
        return self._settings if self._settings is not None else Settings.from_env()

    async def start(self) -> None:
        """Open the pools (starting embedded servers when no URLs are set)."""
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            settings = self.settings
            if settings.embedded:
                settings, embedded = start_embedded(settings)
                stack.callback(embedded.close)
            await migrate_url(settings.database_url)
            pool = await create_pool(
                settings.database_url,
                max_size=self._max_connections,
                connect_timeout_s=settings.db_timeout_s,
            )
            stack.push_async_callback(pool.close)
            redis: ArqRedis = await queue.connect(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            self._settings = settings
            self._pool = pool
            self._submitter = Submitter(pool, redis, queue.Names(settings.namespace))
            self._stack = stack.pop_all()

    async def close(self) -> None:
        """Close the pools (and let go of embedded servers)."""
        stack, self._stack = self._stack, None
        self._pool = self._submitter = None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Tidings:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __call__(self) -> Tidings:
        """As a FastAPI dependency (`Depends(tidings)`): this instance."""
        return self

    async def submit(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        connection: Any = None,
        **options: Any,
    ) -> Job:
        """Submit one job, as `POST /jobs` with body `{"task", "args", **options}`.

        `options` are the body's other fields: `queue`, `priority`, `delay_s`, `run_at`
        (ISO 8601 text with an offset), `max_attempts`, `timeout_s`, `idempotency_key`,
        `cache`. With `connection` (asyncpg, or SQLAlchemy async on asyncpg, in an open
        transaction) the job commits or rolls back with the caller's transaction.
        """
        pool, submitter = self._started()
        body = {"task": task, "args": {} if args is None else args, **options}
        request = await job_request(
            pool,
            self._validators,
            body,
            tenant=self.tenant,
            max_args_bytes=self.settings.max_args_bytes,
        )
        submitted: Submitted | None
        if connection is None and request.keys.acts_at_submit:
            submitted = await submit_keyed(submitter, request)
        elif connection is None:
            submitted = await submitter.submit(request)
            assert submitted is not None  # only cron slots are refused
        else:
            channel = committed_channel(self.settings.namespace)
            submitted = await submit_in_transaction(connection, request, channel)
        return job_json(submitted.row, self._base_url)

    async def submit_batch(
        self, items: list[dict[str, Any]], *, connection: Any = None
    ) -> list[Job]:
        """Submit every job or none, as `POST /jobs/batch` with body `{"jobs": items}`."""
        pool, submitter = self._started()
        requests = await batch_requests(
            pool,
            self._validators,
            {"jobs": items},
            tenant=self.tenant,
            max_args_bytes=self.settings.max_args_bytes,
        )
        if connection is None:
            rows = await submitter.submit_many(requests)
        else:
            channel = committed_channel(self.settings.namespace)
            rows = await submit_many_in_transaction(connection, requests, channel)
        return [job_json(row, self._base_url) for row in rows]

    async def get(self, job_id: uuid.UUID | str) -> Job:
        """The job, as `GET /jobs/{id}` shows it (without the ETA); `NotFound` if unknown."""
        pool, _ = self._started()
        return job_json(await load_job(pool, str(job_id), self.tenant), self._base_url)

    def _started(self) -> tuple[asyncpg.Pool, Submitter]:
        if self._pool is None or self._submitter is None:
            raise Unavailable(
                "Tidings is not started: use `async with Tidings() as tidings:` or "
                "`await tidings.start()`",
                code="not_started",
            )
        return self._pool, self._submitter
