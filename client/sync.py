"""`Client`: the tidings HTTP API for ordinary blocking code (scripts, Django views, the CLI).

It mirrors `AsyncClient` method for method; what to send and what answers mean is shared
through `client.calls`, `client.transport` and `client.reconnect`, so the two cannot drift
apart.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import closing
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


class Client:
    """Submit, inspect, cancel and follow jobs on a tidings server, blocking.

    `url` and `api_key` default to `TIDINGS_URL` and `TIDINGS_API_KEY` (then
    http://127.0.0.1:8000, no key). Use it as `with Client() as client:`, or call `close()`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        stream_read_timeout_s: float = STREAM_READ_TIMEOUT_S,
        reconnect: ReconnectPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, environ)
        self.reconnect = reconnect or ReconnectPolicy()
        self._timeout_s = timeout_s
        self._stream_read_timeout_s = stream_read_timeout_s
        self._http = httpx.Client(
            base_url=self.config.url,
            headers=self.config.headers(USER_AGENT),
            timeout=timeout_s,
            transport=transport,
        )

    @property
    def url(self) -> str:
        return self.config.url

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, json=call.json, params=call.params
            )
        except httpx.TransportError as exc:
            raise unreachable(exc, self.url) from None
        return call.read(decode(response))

    # --- jobs ----------------------------------------------------------------------------

    def submit(
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

        An arg named like one of the options (`queue`, `delay_s`, …) must go in `args={...}`.
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
        return self._send(calls.submit(spec))

    def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[str]:
        """Submit several jobs in one transaction: all are created, or none (`Invalid`)."""
        return self._send(calls.submit_many(jobs))

    def get(self, job_id: str) -> Job:
        """The job as it is now."""
        return self._send(calls.get(job_id))

    def list(
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
        return self._send(calls.list_jobs(limit=limit, cursor=cursor, **filters))

    def iter_jobs(self, *, page_size: int = 100, **filters: Unpack[JobFilters]) -> Iterator[Job]:
        """Every job the filters (as `list`'s) match, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list(limit=page_size, cursor=cursor, **filters)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a waiting one at once; a running one is told to stop (status stays
        running until its worker confirms). A finished job is a `Conflict`."""
        return self._send(calls.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again, as a new attempt; otherwise `Conflict`."""
        return self._send(calls.retry(job_id))

    def history(self, job_id: str, *, after: int = 0) -> builtins.list[Event]:
        """The job's events so far with seq > `after`, without waiting for more (the
        server's history pages, read to the end)."""
        events: builtins.list[Event] = []
        next_after: int | None = after
        while next_after is not None:
            page, next_after = self._send(calls.history_page(job_id, next_after))
            events += page
        return events

    # --- many jobs at once: bulk actions and trends --------------------------------------

    def bulk_cancel(self, job_ids: Iterable[str]) -> BulkResult:
        """Cancel 1 to `max_jobs` (1000) jobs in one request, each as `cancel` would; the
        result says, per id, whether it was cancelled, told to stop, skipped or not found."""
        return self._send(finding_calls.bulk_by_ids("cancel", job_ids))

    def bulk_retry(self, job_ids: Iterable[str]) -> BulkResult:
        """Retry 1 to `max_jobs` (1000) failed or cancelled jobs in one request, each as
        `retry` would; the others are `skipped` (or `not_found`) in the result."""
        return self._send(finding_calls.bulk_by_ids("retry", job_ids))

    def retry_failed(
        self, *, failed_before: datetime | None = None, **filters: Unpack[JobFilters]
    ) -> BulkResult:
        """Retry the oldest `max_jobs` failed jobs the filters (as `list`'s) match, that
        failed before `failed_before` if given (timezone-aware). `result.more` says more
        matched: call again with the same `failed_before` for the next ones."""
        return self._send(finding_calls.retry_failed(failed_before=failed_before, **filters))

    def trends(self, window: TrendWindow = "1h", **filters: Unpack[JobFilters]) -> Trends:
        """The jobs the filters (as `list`'s) match that finished in the last `window`: per
        minute by outcome, and wait and run times overall, per task and per queue."""
        return self._send(finding_calls.trends(window, **filters))

    # --- batches -------------------------------------------------------------------------

    def submit_batch(
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
        return self._send(batch_calls.submit_batch(jobs, name=name, metadata=metadata))

    def get_batch(self, batch_id: str) -> Batch:
        """The batch as it is now: counts per status, progress, ETA."""
        return self._send(batch_calls.get_batch(batch_id))

    def list_batches(self, *, limit: int | None = None, cursor: str | None = None) -> BatchPage:
        """One page of batches, newest first; pass `page.next_cursor` as `cursor` for the next."""
        return self._send(batch_calls.list_batches(limit=limit, cursor=cursor))

    def cancel_batch(self, batch_id: str) -> BatchChange:
        """Cancel every member that has not ended; `count` says how many were."""
        return self._send(batch_calls.cancel_batch(batch_id))

    def retry_batch(self, batch_id: str) -> BatchChange:
        """Run the batch's failed members again; `count` says how many."""
        return self._send(batch_calls.retry_batch(batch_id))

    def stream_batch(
        self, batch_id: str, *, last_event_id: int | None = None
    ) -> Generator[BatchEvent, None, None]:
        """The batch's stream, live: each member transition (`BatchJobEvent`) exactly once
        and in order, `BatchProgressEvent` snapshots between them, and last `BatchFinished`.

        Starts after transition `last_event_id` (default: from the first). A broken
        connection is resumed with `Last-Event-ID` as `stream` does.
        """
        cursor = BatchCursor(str(batch_id), last_event_id or 0, self.reconnect)
        while not cursor.finished:
            try:
                path = batch_path(batch_id, "/events")
                with closing(self._connection(path, cursor, None)) as events:
                    for event in events:
                        yield event
                        if cursor.may_have_ended(event):
                            end = cursor.end_if_finished(self.get_batch(cursor.batch_id))
                            if end is not None:
                                yield end
                                return
                if cursor.closed_quietly:
                    yield cursor.end_of(self.get_batch(cursor.batch_id))
            except RETRYABLE as exc:
                time.sleep(cursor.failed(exc))

    # --- registry ------------------------------------------------------------------------

    def tasks(self) -> builtins.list[TaskInfo]:
        """Tasks the workers have registered."""
        return self._send(calls.tasks())

    def workers(self) -> builtins.list[WorkerInfo]:
        """Registered workers: queues, concurrency, last heartbeat and how many jobs each
        runs (of the caller's jobs, for a tenant's key)."""
        return self._send(calls.workers())

    def queues(self) -> builtins.list[QueueInfo]:
        """Each queue's due, scheduled and running jobs, the oldest wait, and its workers."""
        return self._send(calls.queues())

    # --- following a job -----------------------------------------------------------------

    @overload
    def wait(
        self, job_id: str, *, timeout: float | None = None, raise_on_failure: bool = False
    ) -> Job: ...

    @overload
    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        raise_on_failure: Literal[True] = True,
        result_type: type[T],
    ) -> Job[T]: ...

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        raise_on_failure: bool = False,
        result_type: type[Any] | None = None,
    ) -> Job[Any]:
        """The job once it has succeeded, failed or been cancelled (it follows the event
        stream, no polling). Raises `TimeoutError` after `timeout` seconds.

        The deadline is checked on every event and keep-alive, and no read waits past it
        while the stream is quiet; a burst of events may delay it by one keep-alive period.
        `raise_on_failure` and `result_type` work as in `AsyncClient.wait`: `JobFailed`,
        `JobCancelled`, and a result validated into a `Job[Model]` (or `UnexpectedResult`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                job = self.get(job_id)
                if job.terminal:
                    break
                with closing(self._stream(job_id, 0, deadline)) as events:
                    for _ in events:
                        pass
        except TimeoutError:
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s") from None
        return settle(job, raise_on_failure=raise_on_failure, result_type=result_type)

    def stream(self, job_id: str, *, after: int = 0) -> Generator[Event, None, None]:
        """The job's events with seq > `after`, live, each exactly once and in order.

        Ends after the event that finished the job. A broken connection is resumed with
        `Last-Event-ID` (see `ReconnectPolicy`); if the server cannot be reached to begin
        with, `ConnectionError` is raised at once.
        """
        return self._stream(job_id, after, None)

    def _stream(
        self, job_id: str, after: int, deadline: float | None
    ) -> Generator[Event, None, None]:
        cursor = StreamCursor(str(job_id), after, self.reconnect)
        while not cursor.finished:
            try:
                path = job_path(cursor.job_id, "/events")
                with closing(self._connection(path, cursor, deadline)) as events:
                    yield from events
                if not cursor.closed_quietly:
                    continue
                # Closed at once with nothing new: either the job ended at or before
                # `last_seq` (the server has nothing more to say), or the server is stopping.
                cursor.check_ended(self.get(cursor.job_id))
                missed = self.history(cursor.job_id, after=cursor.last_seq)
                yield from cursor.catch_up(missed)
                if not missed:
                    return
            except RETRYABLE as exc:
                delay = cursor.failed(exc)
                time.sleep(_until(deadline, delay))

    def _connection(
        self, path: str, cursor: ResumableStream[E], deadline: float | None
    ) -> Generator[E, None, None]:
        """The new events of one SSE connection, until the server closes it."""
        read_timeout = _until(deadline, self._stream_read_timeout_s)
        if read_timeout <= 0:
            raise TimeoutError(f"{cursor.subject} did not finish in time")
        try:
            with self._http.stream(
                "GET",
                path,
                headers=cursor.request_headers(),
                timeout=httpx.Timeout(self._timeout_s, read=read_timeout),
            ) as response:
                if not response.is_success:
                    response.read()
                check_event_stream(response)
                cursor.opened()
                for sse in EventSource(response).iter_sse():
                    event = cursor.accept(sse)
                    if event is not None:
                        yield event
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError(f"{cursor.subject} did not finish in time")
        except httpx.TransportError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{cursor.subject} did not finish in time") from None
            raise unreachable(exc, self.url) from None


def _until(deadline: float | None, at_most_s: float) -> float:
    """`at_most_s`, or less if the deadline comes sooner."""
    if deadline is None:
        return at_most_s
    return max(0.0, min(at_most_s, deadline - time.monotonic()))
