"""`AsyncClient`: the tidings HTTP API for asyncio code (a FastAPI backend, an agent)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import aclosing
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx
from httpx_sse import EventSource
from typing_extensions import Unpack

from tidings.client import batch_calls, calls, finding_calls
from tidings.client.batch_calls import batch_path
from tidings.client.batch_cursor import BatchCursor
from tidings.client.batch_models import Batch, BatchChange, BatchEvent, BatchPage
from tidings.client.calls import Call, job_path
from tidings.client.config import DEFAULT_TIMEOUT_S, STREAM_READ_TIMEOUT_S, ClientConfig
from tidings.client.finding_models import BulkResult, Trends, TrendWindow
from tidings.client.job_filters import JobFilters
from tidings.client.models import (
    Event,
    Job,
    JobPage,
    JobSpec,
    QueueInfo,
    TaskInfo,
    WorkerInfo,
)
from tidings.client.outcome import settle
from tidings.client.reconnect import RETRYABLE, ReconnectPolicy, ResumableStream, StreamCursor
from tidings.client.transport import USER_AGENT, check_event_stream, decode, unreachable

T = TypeVar("T")
E = TypeVar("E")


class AsyncClient:
    """Submit, inspect, cancel and follow jobs on a tidings server.

    `url` and `api_key` default to `TIDINGS_URL` and `TIDINGS_API_KEY` (then
    http://127.0.0.1:8000, no key). Use it as `async with AsyncClient() as client:`, or
    call `aclose()`. Errors are `client.errors` types; an unreachable server is
    `client.errors.ConnectionError`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        stream_read_timeout_s: float = STREAM_READ_TIMEOUT_S,
        reconnect: ReconnectPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, environ)
        self.reconnect = reconnect or ReconnectPolicy()
        self._stream_timeout = httpx.Timeout(timeout_s, read=stream_read_timeout_s)
        self._http = httpx.AsyncClient(
            base_url=self.config.url,
            headers=self.config.headers(USER_AGENT),
            timeout=timeout_s,
            transport=transport,
        )

    @property
    def url(self) -> str:
        return self.config.url

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params
            )
        except httpx.TransportError as exc:
            raise unreachable(exc, self.url) from None
        return call.read(decode(response))

    # --- jobs ----------------------------------------------------------------------------

    async def submit(
        self,
        task: str,
        /,
        *,
        args: Mapping[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay_s: float | None = None,
        run_at: datetime | str | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
        **task_args: Any,
    ) -> Job:
        """Submit one job; keyword arguments become the task's args.

        An arg named like one of the options (`queue`, `delay_s`, …) must go in `args={...}`:
        `submit("sleep_steps", steps=3, args={"delay_s": 0.5})`.
        """
        spec = JobSpec(
            task,
            calls.merged_args(args, task_args),
            queue=queue,
            priority=priority,
            delay_s=delay_s,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )
        return await self._send(calls.submit(spec))

    async def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[str]:
        """Submit several jobs in one transaction: all are created, or none (`Invalid`)."""
        return await self._send(calls.submit_many(jobs))

    async def get(self, job_id: str) -> Job:
        """The job as it is now."""
        return await self._send(calls.get(job_id))

    async def list(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        **filters: Unpack[JobFilters],
    ) -> JobPage:
        """One page of jobs, newest first; pass `page.next_cursor` as `cursor` for the next.

        `filters` (`JobFilters`) narrow it: `status`, `task`, `task_prefix`,
        `task_contains`, the same three for `queue`, `created_after`, `created_before`
        (timezone-aware), `batch_id` (a batch's members), `parent_id` (a job's children)."""
        return await self._send(calls.list_jobs(limit=limit, cursor=cursor, **filters))

    async def iter_jobs(
        self, *, page_size: int = 100, **filters: Unpack[JobFilters]
    ) -> AsyncIterator[Job]:
        """Every job the filters (as `list`'s) match, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = await self.list(limit=page_size, cursor=cursor, **filters)
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a waiting one at once; a running one is told to stop (status stays
        running until its worker confirms). A finished job is a `Conflict`."""
        return await self._send(calls.cancel(job_id))

    async def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again, as a new attempt; otherwise `Conflict`."""
        return await self._send(calls.retry(job_id))

    async def history(self, job_id: str, *, after: int = 0) -> builtins.list[Event]:
        """The job's events so far with seq > `after`, without waiting for more (the
        server's history pages, read to the end)."""
        events: builtins.list[Event] = []
        next_after: int | None = after
        while next_after is not None:
            page, next_after = await self._send(calls.history_page(job_id, next_after))
            events += page
        return events

    # --- many jobs at once: bulk actions and trends --------------------------------------

    async def bulk_cancel(self, job_ids: Iterable[str]) -> BulkResult:
        """Cancel 1 to `max_jobs` (1000) jobs in one request, each as `cancel` would; the
        result says, per id, whether it was cancelled, told to stop, skipped or not found."""
        return await self._send(finding_calls.bulk_by_ids("cancel", job_ids))

    async def bulk_retry(self, job_ids: Iterable[str]) -> BulkResult:
        """Retry 1 to `max_jobs` (1000) failed or cancelled jobs in one request, each as
        `retry` would; the others are `skipped` (or `not_found`) in the result."""
        return await self._send(finding_calls.bulk_by_ids("retry", job_ids))

    async def retry_failed(
        self, *, failed_before: datetime | None = None, **filters: Unpack[JobFilters]
    ) -> BulkResult:
        """Retry the oldest `max_jobs` failed jobs the filters (as `list`'s) match, that
        failed before `failed_before` if given (timezone-aware). `result.more` says more
        matched: call again with the same `failed_before` for the next ones."""
        return await self._send(finding_calls.retry_failed(failed_before=failed_before, **filters))

    async def trends(self, window: TrendWindow = "1h", **filters: Unpack[JobFilters]) -> Trends:
        """The jobs the filters (as `list`'s) match that finished in the last `window`: per
        minute by outcome, and wait and run times overall, per task and per queue."""
        return await self._send(finding_calls.trends(window, **filters))

    # --- batches -------------------------------------------------------------------------

    async def submit_batch(
        self,
        jobs: Iterable[JobSpec | Mapping[str, Any]],
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Batch:
        """Submit jobs as one batch, all or none (`Invalid` names the bad one).

        A job may name others it waits for in `depends_on`: ids of existing jobs, or the
        `ref` of another job in the same batch. The batch's `job_ids` are the members' ids
        in the order given.
        """
        return await self._send(batch_calls.submit_batch(jobs, name=name, metadata=metadata))

    async def get_batch(self, batch_id: str) -> Batch:
        """The batch as it is now: counts per status, progress, ETA."""
        return await self._send(batch_calls.get_batch(batch_id))

    async def list_batches(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> BatchPage:
        """One page of batches, newest first; pass `page.next_cursor` as `cursor` for the next."""
        return await self._send(batch_calls.list_batches(limit=limit, cursor=cursor))

    async def cancel_batch(self, batch_id: str) -> BatchChange:
        """Cancel every member that has not ended; `count` says how many were."""
        return await self._send(batch_calls.cancel_batch(batch_id))

    async def retry_batch(self, batch_id: str) -> BatchChange:
        """Run the batch's failed members again; `count` says how many."""
        return await self._send(batch_calls.retry_batch(batch_id))

    async def stream_batch(
        self, batch_id: str, *, last_event_id: int | None = None
    ) -> AsyncGenerator[BatchEvent, None]:
        """The batch's stream, live: each member transition (`BatchJobEvent`) exactly once
        and in order, `BatchProgressEvent` snapshots between them, and last `BatchFinished`.

        Starts after transition `last_event_id` (default: from the first). A broken
        connection is resumed with `Last-Event-ID` as `stream` does.
        """
        cursor = BatchCursor(str(batch_id), last_event_id or 0, self.reconnect)
        while not cursor.finished:
            try:
                async with aclosing(
                    self._connection(batch_path(batch_id, "/events"), cursor)
                ) as events:
                    async for event in events:
                        yield event
                        if cursor.may_have_ended(event):
                            end = cursor.end_if_finished(await self.get_batch(cursor.batch_id))
                            if end is not None:
                                yield end
                                return
                if cursor.closed_quietly:
                    yield cursor.end_of(await self.get_batch(cursor.batch_id))
            except RETRYABLE as exc:
                await asyncio.sleep(cursor.failed(exc))

    # --- registry ------------------------------------------------------------------------

    async def tasks(self) -> builtins.list[TaskInfo]:
        """Tasks the workers have registered."""
        return await self._send(calls.tasks())

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Registered workers: queues, concurrency, last heartbeat and how many jobs each
        runs (of the caller's jobs, for a tenant's key)."""
        return await self._send(calls.workers())

    async def queues(self) -> builtins.list[QueueInfo]:
        """Each queue's due, scheduled and running jobs, the oldest wait, and its workers."""
        return await self._send(calls.queues())

    # --- following a job -----------------------------------------------------------------

    # `timeout=` rather than asyncio.timeout() around the call: the sync Client has the same API.
    @overload
    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        raise_on_failure: bool = False,
    ) -> Job: ...

    @overload
    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        raise_on_failure: Literal[True] = True,
        result_type: type[T],
    ) -> Job[T]: ...

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        raise_on_failure: bool = False,
        result_type: type[Any] | None = None,
    ) -> Job[Any]:
        """The job once it has succeeded, failed or been cancelled (no polling: it follows
        the event stream). Raises `TimeoutError` if that takes longer than `timeout` seconds.

        With `raise_on_failure=True` a failed job raises `JobFailed` (its `error` says why)
        and a cancelled one `JobCancelled`. With `result_type=Model` the result is validated
        into that type (pydantic: a model, a dataclass, `list[int]`, …) and the job is a
        `Job[Model]`; a job that did not succeed raises as with `raise_on_failure`, and a
        result that does not validate raises `UnexpectedResult`.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    job = await self.get(job_id)
                    if job.terminal:
                        break
                    async with aclosing(self.stream(job_id)) as events:
                        async for _ in events:
                            pass
        except TimeoutError:
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s") from None
        return settle(job, raise_on_failure=raise_on_failure, result_type=result_type)

    async def stream(self, job_id: str, *, after: int = 0) -> AsyncGenerator[Event, None]:
        """The job's events with seq > `after`, live, each exactly once and in order.

        Ends after the event that finished the job. A broken connection is resumed with
        `Last-Event-ID` (see `ReconnectPolicy`); if the server cannot be reached to begin
        with, `ConnectionError` is raised at once.
        """
        cursor = StreamCursor(str(job_id), after, self.reconnect)
        while not cursor.finished:
            try:
                path = job_path(cursor.job_id, "/events")
                async with aclosing(self._connection(path, cursor)) as events:
                    async for event in events:
                        yield event
                if not cursor.closed_quietly:
                    continue
                # Closed at once with nothing new: either the job ended at or before
                # `last_seq` (the server has nothing more to say), or the server is stopping.
                cursor.check_ended(await self.get(cursor.job_id))
                missed = await self.history(cursor.job_id, after=cursor.last_seq)
                for event in cursor.catch_up(missed):
                    yield event
                if not missed:
                    return
            except RETRYABLE as exc:
                await asyncio.sleep(cursor.failed(exc))

    async def _connection(self, path: str, cursor: ResumableStream[E]) -> AsyncGenerator[E, None]:
        """The new events of one SSE connection, until the server closes it."""
        try:
            async with self._http.stream(
                "GET",
                path,
                headers=cursor.request_headers(),
                timeout=self._stream_timeout,
            ) as response:
                if not response.is_success:
                    await response.aread()
                check_event_stream(response)
                cursor.opened()
                async for sse in EventSource(response).aiter_sse():
                    event = cursor.accept(sse)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise unreachable(exc, self.url) from None
