"""The Python client against the real server and worker: every call, every error, and streams
that survive a connection cut in the middle of an event.

The sync `Client` runs in a thread (`asyncio.to_thread`), since the server it talks to runs
in this test's event loop. Waits are on events and streams, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import builtins
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import BaseModel

from tests.support import typed_client
from tests.support.paths import REPO_ROOT
from tests.support.proxy import TcpProxy, proxy_to
from tests.support.servers import ServerHandle, WorkerHandle, free_port, start_server
from tidings.client import AsyncClient, Client, JobSpec, ReconnectPolicy, errors
from tidings.client.models import Event
from tidings.core import keys
from tidings.core.settings import Settings

WITHIN_S = 10.0
# Quick reconnects keep the tests fast; the attempt bound is what they check.
FAST = ReconnectPolicy(attempts=4, first_delay_s=0.01, max_delay_s=0.05)


def parked_queue() -> str:
    """A queue no worker consumes: jobs sent there stay queued."""
    return f"parked-{uuid.uuid4().hex[:8]}"


def sleep_kinds(steps: int) -> list[str]:
    return ["queued", "started", *["progress"] * steps, "succeeded"]


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, timeout_s=WITHIN_S, reconnect=FAST) as client:
        yield client


@pytest.fixture
async def proxy(server: ServerHandle) -> AsyncIterator[TcpProxy]:
    async with proxy_to(server.url) as proxy:
        yield proxy


async def collect(client: AsyncClient, job_id: str, after: int = 0) -> list[Event]:
    async with asyncio.timeout(WITHIN_S):
        return [event async for event in client.stream(job_id, after=after)]


async def first_event(client: AsyncClient, job_id: str, kind: str) -> Event:
    """The job's first `kind` event, read from its stream."""
    async with asyncio.timeout(WITHIN_S), aclosing(client.stream(job_id)) as events:
        async for event in events:
            if event.kind == kind:
                return event
    raise AssertionError(f"the stream ended without a {kind!r} event")


# --- submit, get, wait ----------------------------------------------------------------------


async def test_submit_returns_the_queued_job_and_wait_returns_it_finished(
    client: AsyncClient,
) -> None:
    job = await client.submit("sleep_steps", steps=3, args={"delay_s": 0.01})
    assert (job.task, job.status, job.queue) == ("sleep_steps", "queued", "default")
    assert job.args == {"steps": 3, "delay_s": 0.01}
    assert job.links["self"].endswith(f"/jobs/{job.id}")

    done = await client.wait(job.id, timeout=WITHIN_S)

    assert (done.id, done.status, done.succeeded, done.terminal) == (
        job.id,
        "succeeded",
        True,
        True,
    )
    assert done.result == {"steps": 3}
    assert done.error is None
    assert (done.progress.current, done.progress.total, done.progress.fraction) == (3, 3, 1.0)
    assert done.progress.message == "step 3 of 3"
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at is not None and done.created_at <= done.started_at <= done.finished_at
    fetched = await client.get(job.id)
    assert (fetched.status, fetched.result, fetched.attempt) == ("succeeded", {"steps": 3}, 1)


async def test_submit_options_reach_the_job_and_an_idempotency_key_returns_the_same_job(
    client: AsyncClient,
) -> None:
    queue = parked_queue()
    key = f"key-{uuid.uuid4()}"
    job = await client.submit(
        "noop",
        queue=queue,
        priority=5,
        delay_s=60,
        max_attempts=2,
        timeout_s=7.5,
        idempotency_key=key,
    )
    assert (job.queue, job.priority, job.max_attempts, job.timeout_s) == (queue, 5, 2, 7.5)
    assert job.run_at is not None and job.created_at is not None
    assert job.run_at - job.created_at >= timedelta(seconds=59)

    again = await client.submit(
        "noop",
        queue=queue,
        priority=5,
        delay_s=60,
        max_attempts=2,
        timeout_s=7.5,
        idempotency_key=key,
    )
    assert again.id == job.id
    with pytest.raises(errors.Conflict) as conflict:
        await client.submit("noop", queue=queue, priority=1, idempotency_key=key)
    assert (conflict.value.status, conflict.value.code) == (409, "idempotency_conflict")

    later = datetime.now(UTC) + timedelta(hours=1)
    scheduled = await client.submit("noop", queue=queue, run_at=later)
    assert scheduled.run_at == later
    with pytest.raises(ValueError, match="timezone"):
        await client.submit("noop", run_at=datetime(2030, 1, 1))


async def test_args_named_like_options_go_through_args_and_may_not_be_given_twice(
    client: AsyncClient,
) -> None:
    # `delay_s` is both a sleep_steps arg and a submit option; args= keeps them apart.
    job = await client.submit("sleep_steps", args={"delay_s": 0.001, "steps": 1})
    assert job.args == {"delay_s": 0.001, "steps": 1}
    assert job.run_at == job.created_at  # not delayed: delay_s went to the task
    with pytest.raises(TypeError, match="steps"):
        await client.submit("sleep_steps", args={"steps": 1}, steps=2)
    assert (await client.wait(job.id, timeout=WITHIN_S)).result == {"steps": 1}


async def test_submit_many_creates_all_jobs_or_none(client: AsyncClient) -> None:
    ids = await client.submit_many(
        [JobSpec("noop"), JobSpec("sleep_steps", {"steps": 1, "delay_s": 0.001})]
    )
    assert len(ids) == 2
    finished = [await client.wait(job_id, timeout=WITHIN_S) for job_id in ids]
    assert [job.status for job in finished] == ["succeeded", "succeeded"]

    queue = parked_queue()
    with pytest.raises(errors.Invalid) as invalid:
        await client.submit_many([JobSpec("noop", queue=queue), {"task": "no_such_task"}])
    assert invalid.value.details["errors"][0]["index"] == 1
    assert (await client.list(queue=queue)).jobs == []


# --- list -----------------------------------------------------------------------------------


async def test_list_pages_newest_first_and_iter_jobs_walks_every_page(
    client: AsyncClient,
) -> None:
    queue = parked_queue()
    submitted = [(await client.submit("noop", queue=queue)).id for _ in range(5)]
    newest_first = submitted[::-1]

    first = await client.list(queue=queue, limit=2)
    second = await client.list(queue=queue, limit=2, cursor=first.next_cursor)
    third = await client.list(queue=queue, limit=2, cursor=second.next_cursor)

    assert [job.id for job in first.jobs + second.jobs + third.jobs] == newest_first
    assert first.next_cursor and second.next_cursor and third.next_cursor is None
    assert [job.id async for job in client.iter_jobs(queue=queue, page_size=2)] == newest_first
    assert len((await client.list(queue=queue, status="queued", task="noop")).jobs) == 5
    assert (await client.list(queue=queue, status="succeeded")).jobs == []


# --- cancel, retry --------------------------------------------------------------------------


async def test_cancel_a_waiting_job_then_retry_it(client: AsyncClient) -> None:
    job = await client.submit("noop", queue=parked_queue())

    cancelled = await client.cancel(job.id)
    assert (cancelled.status, cancelled.terminal) == ("cancelled", True)
    with pytest.raises(errors.Conflict) as again:
        await client.cancel(job.id)
    assert (again.value.code, again.value.details) == (
        "illegal_transition",
        {"status": "cancelled"},
    )

    retried = await client.retry(job.id)
    assert (retried.status, retried.attempt) == ("queued", 2)
    assert (await client.cancel(job.id)).status == "cancelled"


async def test_cancel_a_running_job_stops_it(client: AsyncClient) -> None:
    job = await client.submit("sleep_steps", steps=200, args={"delay_s": 0.05})
    await first_event(client, job.id, "progress")

    requested = await client.cancel(job.id)
    assert requested.status == "running" and requested.cancel_requested_at is not None

    done = await client.wait(job.id, timeout=WITHIN_S)
    assert done.status == "cancelled"


async def test_retry_a_failed_job_runs_a_new_attempt_and_a_finished_one_is_a_conflict(
    client: AsyncClient,
) -> None:
    job = await client.submit("fail", message="broken on purpose")
    failed = await client.wait(job.id, timeout=WITHIN_S)
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.type, failed.error.message) == ("PermanentError", "broken on purpose")
    assert failed.error.traceback and "PermanentError" in failed.error.traceback

    assert (await client.retry(job.id)).attempt == 2
    failed_again = await client.wait(job.id, timeout=WITHIN_S)
    assert (failed_again.status, failed_again.attempt) == ("failed", 2)

    noop = await client.submit("noop")
    await client.wait(noop.id, timeout=WITHIN_S)
    with pytest.raises(errors.Conflict, match="only failed or cancelled jobs"):
        await client.retry(noop.id)


# --- errors ---------------------------------------------------------------------------------


async def test_server_errors_arrive_as_typed_exceptions_naming_the_field(
    client: AsyncClient,
) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(errors.NotFound) as not_found:
        await client.get(missing)
    assert (not_found.value.status, not_found.value.code) == (404, "not_found")
    assert missing in not_found.value.message
    # The id is escaped: a path in it names no job rather than reaching another route.
    with pytest.raises(errors.NotFound):
        await client.get("../tasks")

    with pytest.raises(errors.Invalid) as unknown:
        await client.submit("no_such_task")
    assert (unknown.value.status, unknown.value.code, unknown.value.field) == (
        422,
        "unknown_task",
        "body.task",
    )
    with pytest.raises(errors.Invalid) as bad_args:
        await client.submit("sleep_steps", steps="many")
    assert (bad_args.value.code, bad_args.value.field) == ("invalid_args", "args.steps")
    assert bad_args.value.reason
    with pytest.raises(errors.Invalid) as bad_status:
        await client.list(status="lost")
    assert bad_status.value.field == "status"


async def test_a_down_server_is_a_connection_error() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as down:
        with pytest.raises(errors.ConnectionError, match="cannot reach") as raised:
            await down.get(str(uuid.uuid4()))
    assert isinstance(raised.value, builtins.ConnectionError)
    assert raised.value.status is None


async def test_the_api_key_is_sent_as_a_bearer_token_and_a_bad_one_is_unauthorized(
    settings: Settings, pool: asyncpg.Pool, worker: WorkerHandle
) -> None:
    key = await keys.create_key(pool, f"tenant-{uuid.uuid4().hex[:6]}", "client tests")
    async with start_server(replace(settings, auth="keys")) as guarded:
        async with AsyncClient(guarded.url, environ={}) as anonymous:
            with pytest.raises(errors.Unauthorized) as no_key:
                await anonymous.list()
        assert (no_key.value.status, no_key.value.code) == (401, "unauthorized")
        async with AsyncClient(guarded.url, api_key="tdk_0000_not-a-key") as wrong:
            with pytest.raises(errors.Unauthorized, match="unknown or revoked"):
                await wrong.submit("noop")

        environ = {"TIDINGS_URL": guarded.url, "TIDINGS_API_KEY": key.secret}
        async with AsyncClient(environ=environ) as keyed:
            job = await keyed.submit("sleep_steps", steps=2, args={"delay_s": 0.001})
            events = [event async for event in keyed.stream(job.id)]
            assert [event.kind for event in events] == sleep_kinds(2)
            assert (await keyed.wait(job.id, timeout=WITHIN_S)).status == "succeeded"
            assert [j.id for j in (await keyed.list()).jobs] == [job.id]  # its tenant's only


# --- registry -------------------------------------------------------------------------------


async def test_tasks_and_workers_describe_the_registry(client: AsyncClient) -> None:
    tasks = {task.name: task for task in await client.tasks()}
    assert {"sleep_steps", "noop", "fail", "flaky"} <= tasks.keys()
    sleep_steps = tasks["sleep_steps"]
    assert sleep_steps.queue == "default"
    assert set(sleep_steps.args_schema["properties"]) == {"steps", "delay_s"}
    assert sleep_steps.defaults["timeout_s"] == 600

    workers = await client.workers()
    assert workers and all(w.heartbeat_at is not None for w in workers)
    assert "default" in workers[0].queues


# --- streams --------------------------------------------------------------------------------


async def test_stream_yields_each_event_once_in_order_and_ends_after_the_terminal_one(
    client: AsyncClient,
) -> None:
    job = await client.submit("sleep_steps", steps=5, args={"delay_s": 0.01})
    events = await collect(client, job.id)

    assert [event.seq for event in events] == list(range(1, 9))
    assert [event.kind for event in events] == sleep_kinds(5)
    progress = [event for event in events if event.kind == "progress"]
    assert [(e.current, e.total, e.fraction) for e in progress] == [
        (i, 5, i / 5) for i in range(1, 6)
    ]
    assert events[-1].terminal and events[-1].result == {"steps": 5}
    assert all(event.job_id == job.id and event.at is not None for event in events)
    assert [event.seq for event in await client.history(job.id)] == list(range(1, 9))


async def test_stream_after_a_seq_starts_there_and_after_the_last_one_ends_at_once(
    client: AsyncClient,
) -> None:
    job = await client.submit("sleep_steps", steps=3, args={"delay_s": 0.001})
    await client.wait(job.id, timeout=WITHIN_S)

    assert [event.seq for event in await collect(client, job.id, after=3)] == [4, 5, 6]
    assert await collect(client, job.id, after=6) == []
    with pytest.raises(errors.Invalid, match="no event 7 yet"):
        await collect(client, job.id, after=7)


async def test_stream_resumes_after_the_connection_is_cut_in_the_middle_of_an_event(
    client: AsyncClient, proxy: TcpProxy
) -> None:
    steps = 8
    job = await client.submit("sleep_steps", steps=steps, args={"delay_s": 0.05})
    # The server's bytes for event 4 are cut after its id line; then two reconnects are
    # refused outright before the third gets through.
    proxy.cut_after(b"id: 4\r\n", then_refuse=2)

    async with AsyncClient(proxy.url, reconnect=FAST) as through_proxy:
        events = await collect(through_proxy, job.id)

    assert proxy.cut_done.is_set() and proxy.refused == 2
    assert bytes(proxy.connections[0].downstream_bytes).endswith(b"id: 4\r\n")
    assert [event.seq for event in events] == list(range(1, steps + 4))
    assert [event.kind for event in events] == sleep_kinds(steps)
    resumed = [head for head in proxy.requests() if f"/jobs/{job.id}/events" in head]
    assert len(resumed) == 2
    assert "last-event-id: 3" in resumed[1].lower()
    assert "last-event-id" not in resumed[0].lower()


async def test_sync_stream_resumes_after_the_connection_is_cut_in_the_middle_of_an_event(
    client: AsyncClient, proxy: TcpProxy
) -> None:
    steps = 8
    job = await client.submit("sleep_steps", steps=steps, args={"delay_s": 0.05})
    proxy.cut_after(b"id: 5\r\n", then_refuse=1)

    def follow() -> list[Event]:
        with Client(proxy.url, reconnect=FAST, timeout_s=WITHIN_S) as sync:
            return list(sync.stream(job.id))

    events = await asyncio.wait_for(asyncio.to_thread(follow), WITHIN_S)

    assert proxy.cut_done.is_set() and proxy.refused == 1
    assert [event.seq for event in events] == list(range(1, steps + 4))
    assert [event.kind for event in events] == sleep_kinds(steps)
    resumed = [head for head in proxy.requests() if f"/jobs/{job.id}/events" in head]
    assert "last-event-id: 4" in resumed[-1].lower()


async def test_stream_gives_up_after_the_policys_attempts(
    client: AsyncClient, proxy: TcpProxy
) -> None:
    job = await client.submit("sleep_steps", steps=50, args={"delay_s": 0.02})
    proxy.cut_after(b"id: 3\r\n", then_refuse=1000)
    seen: list[int] = []

    async with AsyncClient(proxy.url, reconnect=FAST) as through_proxy:
        with pytest.raises(errors.ConnectionError, match=r"gave up resuming .* after 4 attempts"):
            async with asyncio.timeout(WITHIN_S):
                async for event in through_proxy.stream(job.id):
                    seen.append(event.seq)

    assert seen == [1, 2]
    assert proxy.refused == FAST.attempts
    await client.cancel(job.id)


async def test_a_stream_that_never_connected_fails_at_once_without_retrying(
    client: AsyncClient,
) -> None:
    patient = ReconnectPolicy(attempts=100, first_delay_s=60)
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", reconnect=patient) as down:
        with pytest.raises(errors.ConnectionError, match="cannot reach"):
            await collect(down, str(uuid.uuid4()))
    with pytest.raises(errors.NotFound):
        await collect(client, str(uuid.uuid4()))


async def test_wait_raises_timeout_error_when_the_job_runs_longer(client: AsyncClient) -> None:
    job = await client.submit("sleep_steps", steps=2000, args={"delay_s": 0.05})
    with pytest.raises(TimeoutError, match=job.id):
        await client.wait(job.id, timeout=0.3)
    # It gave up on its own deadline, not because the job (100 s long) ended.
    assert (await client.get(job.id)).status == "running"

    def sync_wait() -> None:
        with Client(client.url) as sync, pytest.raises(TimeoutError, match=job.id):
            sync.wait(job.id, timeout=0.3)

    await asyncio.to_thread(sync_wait)
    assert (await client.get(job.id)).status == "running"
    await client.cancel(job.id)
    assert (await client.wait(job.id, timeout=WITHIN_S)).status == "cancelled"


# --- the sync client ------------------------------------------------------------------------


async def test_the_sync_client_does_what_the_async_one_does(server: ServerHandle) -> None:
    def session() -> None:
        with Client(server.url, timeout_s=WITHIN_S) as sync:
            job = sync.submit("sleep_steps", steps=2, args={"delay_s": 0.001})
            assert sync.wait(job.id, timeout=WITHIN_S).result == {"steps": 2}
            assert [e.kind for e in sync.stream(job.id)] == sleep_kinds(2)
            assert [e.seq for e in sync.history(job.id, after=4)] == [5]

            queue = parked_queue()
            ids = sync.submit_many([JobSpec("noop", queue=queue) for _ in range(3)])
            page = sync.list(queue=queue, limit=2)
            assert len(page.jobs) == 2 and page.next_cursor is not None
            assert {job.id for job in sync.iter_jobs(queue=queue, page_size=2)} == set(ids)

            assert sync.cancel(ids[0]).status == "cancelled"
            assert sync.retry(ids[0]).status == "queued"
            with pytest.raises(errors.Conflict):
                sync.retry(ids[1])
            with pytest.raises(errors.NotFound):
                sync.get(str(uuid.uuid4()))
            with pytest.raises(errors.Invalid) as invalid:
                sync.submit("sleep_steps", steps=-1.5)
            assert invalid.value.field == "args.steps"
            assert "sleep_steps" in {task.name for task in sync.tasks()}
            assert sync.workers()

        with (
            Client(f"http://127.0.0.1:{free_port()}") as down,
            pytest.raises(errors.ConnectionError),
        ):
            down.tasks()

    await asyncio.wait_for(asyncio.to_thread(session), WITHIN_S * 2)


# --- wait: failures raised, results typed ---------------------------------------------------


class Steps(BaseModel):
    steps: int


@dataclass
class StepsRecord:
    steps: int


async def test_wait_raises_job_failed_or_job_cancelled_when_asked(client: AsyncClient) -> None:
    failing = await client.submit("fail", message="out of paper")
    assert (await client.wait(failing.id, timeout=WITHIN_S)).status == "failed"  # the default
    with pytest.raises(errors.JobFailed) as failed:
        await client.wait(failing.id, timeout=WITHIN_S, raise_on_failure=True)
    assert failed.value.job.id == failing.id
    assert failed.value.error is not None
    assert (failed.value.error.type, failed.value.error.message) == (
        "PermanentError",
        "out of paper",
    )
    assert str(failed.value) == f"job {failing.id} (fail) failed: PermanentError: out of paper"
    assert isinstance(failed.value, errors.JobNotSucceeded | errors.TidingsError)

    parked = await client.submit("noop", queue=parked_queue())
    await client.cancel(parked.id)
    with pytest.raises(errors.JobCancelled) as cancelled:
        await client.wait(parked.id, timeout=WITHIN_S, raise_on_failure=True)
    assert cancelled.value.job.status == "cancelled"

    fine = await client.submit("noop")
    assert (await client.wait(fine.id, timeout=WITHIN_S, raise_on_failure=True)).succeeded


async def test_wait_validates_the_result_into_the_type_asked_for(client: AsyncClient) -> None:
    job = await client.submit("sleep_steps", steps=2, args={"delay_s": 0.001})

    as_model = await client.wait(job.id, timeout=WITHIN_S, result_type=Steps)
    as_record = await client.wait(job.id, timeout=WITHIN_S, result_type=StepsRecord)
    assert as_model.result == Steps(steps=2) and as_model.id == job.id
    assert as_record.result == StepsRecord(steps=2)
    assert (await client.wait(job.id)).result == {"steps": 2}  # untyped: the JSON as sent

    with pytest.raises(errors.UnexpectedResult, match=r"not a valid list\[str\]") as wrong:
        await client.wait(job.id, result_type=builtins.list[str])
    assert wrong.value.job.id == job.id and wrong.value.__cause__ is not None

    failing = await client.submit("fail")
    with pytest.raises(errors.JobFailed):  # a failed job has no result to validate
        await client.wait(failing.id, timeout=WITHIN_S, result_type=Steps)


async def test_the_sync_wait_raises_and_validates_the_same_way(server: ServerHandle) -> None:
    def session() -> None:
        with Client(server.url, timeout_s=WITHIN_S) as sync:
            job = sync.submit("sleep_steps", steps=1, args={"delay_s": 0.001})
            assert sync.wait(job.id, timeout=WITHIN_S, result_type=Steps).result == Steps(steps=1)
            failing = sync.submit("fail", message="no ink")
            with pytest.raises(errors.JobFailed, match="no ink"):
                sync.wait(failing.id, timeout=WITHIN_S, raise_on_failure=True)
            with pytest.raises(errors.UnexpectedResult):
                sync.wait(job.id, result_type=int)

    await asyncio.to_thread(session)


async def test_workers_say_how_many_jobs_they_run_and_queues_their_load(
    client: AsyncClient,
) -> None:
    job = await client.submit("sleep_steps", steps=200, args={"delay_s": 0.05})
    await first_event(client, job.id, "progress")
    parked = parked_queue()
    await client.submit("noop", queue=parked)
    await client.submit("noop", queue=parked, delay_s=600)

    workers = await client.workers()
    queues = {queue.queue: queue for queue in await client.queues()}
    await client.cancel(job.id)

    assert sum(worker.running or 0 for worker in workers) >= 1
    assert all(worker.raw["id"] == worker.id for worker in workers)
    assert (queues[parked].due, queues[parked].scheduled, queues[parked].running) == (1, 1, 0)
    assert (queues[parked].workers, queues[parked].slots) == (0, 0)
    assert queues[parked].oldest_due_s is not None and queues[parked].oldest_due_s >= 0
    assert queues["default"].running >= 1 and queues["default"].workers >= 1
    assert (await client.wait(job.id, timeout=WITHIN_S)).status == "cancelled"


# --- typed use: mypy --strict on a user's script --------------------------------------------

SCRIPT = Path(typed_client.__file__)


def strict_mypy(script: Path, tree: Path) -> subprocess.CompletedProcess[str]:
    """`mypy --strict` on `script`, finding tidings only in `tree` (the client, linked in),
    as in a project that installed `pip install tidings`."""
    package = tree / "tidings"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "py.typed"):
        if not (package / name).exists():
            (package / name).symlink_to(REPO_ROOT / "tidings" / name)
    if not (package / "client").exists():
        (package / "client").symlink_to(REPO_ROOT / "client")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", str(script)],
        cwd=tree,  # away from the repository's own mypy configuration
        env={"MYPYPATH": str(tree), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_user_script_using_the_typed_client_passes_mypy_strict(tmp_path: Path) -> None:
    checked = strict_mypy(SCRIPT, tmp_path / "tree")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found in 1 source file" in checked.stdout

    # The check bites: reading a typed result as the wrong type is an error.
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        SCRIPT.read_text().replace("steps: int = done.result.steps", "steps: str = done.result")
    )
    refused = strict_mypy(wrong, tmp_path / "tree")
    assert refused.returncode == 1
    assert '(expression has type "Steps", variable has type "str")' in refused.stdout


async def test_the_user_script_runs_against_the_server(server: ServerHandle) -> None:
    lines = await asyncio.wait_for(asyncio.to_thread(typed_client.report, server.url), WITHIN_S)
    assert lines[:3] == [
        "succeeded after 2 steps",
        "failed: PermanentError: out of paper",
        "not a list of int: job True",
    ]
    assert lines[3].startswith("1 worker(s), ")
    assert await typed_client.report_async(server.url) == 3
