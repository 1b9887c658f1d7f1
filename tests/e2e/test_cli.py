"""The real `tidings` CLI, run as a subprocess against a live server and worker process.

The server checks API keys here (TIDINGS_AUTH=keys), so every run goes through the key
handling a user's would. Ctrl-C is a real SIGINT sent to the CLI process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version

import asyncpg
import pytest

from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port, spawn
from tidings.cli import exits
from tidings.client import AsyncClient
from tidings.core import keys
from tidings.core.settings import Settings

pytestmark = pytest.mark.e2e

WITHIN_S = 20.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Live:
    url: str
    api_key: str


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def process_settings(settings: Settings) -> Settings:
    return replace(settings, port=free_port(), log_level="info", auth="keys")


@pytest.fixture(scope="module")
async def live(process_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Live]:
    server = await spawn("tidings.server", process_settings)
    worker = await spawn("tidings.worker", process_settings)
    await asyncio.gather(server.wait_for_line("server.ready"), worker.wait_for_line("worker.ready"))
    key = await keys.create_key(pool, "default", "cli tests")
    yield Live(f"http://127.0.0.1:{process_settings.port}", key.secret)
    assert await worker.stop() == 0, worker.output
    assert await server.stop() == 0, server.output


@pytest.fixture(scope="module")
async def api(live: Live) -> AsyncIterator[AsyncClient]:
    """The Python client, to check what the CLI did."""
    async with AsyncClient(live.url, api_key=live.api_key, timeout_s=WITHIN_S) as client:
        yield client


def cli_env(live: Live, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TIDINGS_", "FORCE_COLOR", "TTY_", "COLUMNS", "NO_COLOR"))
    }
    env.update(TIDINGS_URL=live.url, TIDINGS_API_KEY=live.api_key, PYTHONPATH=str(REPO_ROOT))
    env.update(extra)
    return env


@asynccontextmanager
async def running(live: Live, *args: str, **env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`tidings ARGS…` as a running process; killed if still running when the block ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.cli",
        *args,
        env=cli_env(live, **env),
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def tidings(live: Live, *args: str, **env: str) -> Run:
    """Run `tidings ARGS…` to the end."""
    async with running(live, *args, **env) as process:
        out, err = await asyncio.wait_for(process.communicate(), WITHIN_S)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def read_until(stream: asyncio.StreamReader, needle: str) -> str:
    """Lines from `stream` up to and including the first that contains `needle`."""
    seen = ""
    async with asyncio.timeout(WITHIN_S):
        while needle not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"output ended before {needle!r}:\n{seen}")
            seen += line.decode()
    return seen


# rich's default spinner ("dots").
SPINNER = re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def last_bar(err: str) -> str:
    """The progress bar as the last redraw left it on the terminal."""
    frames = re.split(r"[\r\n]", ANSI.sub("", err))
    return [frame for frame in frames if "━" in frame][-1].strip()


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def one_line_error(run: Run) -> str:
    """The run's only stderr line: an error message, not a traceback."""
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    assert run.out == ""
    return lines[0]


# --- submit --follow ------------------------------------------------------------------------


async def test_submit_follow_prints_progress_with_an_eta_then_the_result(
    live: Live, api: AsyncClient
) -> None:
    run = await tidings(live, "submit", "sleep_steps", "steps=4", "delay_s=0.05", "--follow")

    assert run.code == 0, run.err
    job_id, result = run.out.split("\n", 1)
    assert json.loads(result) == {"steps": 4}
    for step in range(1, 5):
        assert f"{step * 25}% {step}/4 step {step} of 4" in run.err
    assert "(eta " in run.err
    assert run.err.index("started") < run.err.index("progress") < run.err.index("succeeded")
    job = await api.get(job_id)
    assert (job.status, job.args) == ("succeeded", {"steps": 4, "delay_s": 0.05})


async def test_on_a_terminal_follow_draws_a_live_progress_bar(live: Live) -> None:
    run = await tidings(
        live,
        "submit",
        "sleep_steps",
        "--args-json",
        '{"steps": 6, "delay_s": 0.05}',
        "--follow",
        TTY_COMPATIBLE="1",
        TTY_INTERACTIVE="1",
        COLUMNS="100",
    )

    assert run.code == 0, run.err
    screen = ANSI.sub("", run.err)
    assert "\x1b[" in run.err  # redrawn in place, not printed line by line
    assert "━" in screen  # the bar
    assert "100% 6/6" in screen and "step 6 of 6" in screen
    assert "✓ succeeded" in screen
    assert json.loads(run.out.split("\n", 1)[1]) == {"steps": 6}
    assert last_bar(run.err).startswith("✓ succeeded")


async def test_on_a_terminal_a_failed_job_leaves_a_cross_not_a_frozen_spinner(live: Live) -> None:
    run = await tidings(
        live,
        "submit",
        "fail",
        "--follow",
        TTY_COMPATIBLE="1",
        TTY_INTERACTIVE="1",
        COLUMNS="100",
    )

    assert run.code == 1
    final = last_bar(run.err)
    assert final.startswith("✗ failed"), final
    assert not SPINNER.search(final)


async def test_follow_of_a_failing_job_prints_the_error_and_exits_1(live: Live) -> None:
    run = await tidings(live, "submit", "fail", "message=[bold]broken", "--follow")

    assert run.code == 1
    assert "✗ failed after 1 of 3 attempts: PermanentError: [bold]broken" in run.err
    assert "Traceback" not in run.err


async def test_ctrl_c_stops_following_and_leaves_the_job_running(
    live: Live, api: AsyncClient
) -> None:
    follow = ("submit", "sleep_steps", "steps=400", "delay_s=0.05", "--follow")
    async with running(live, *follow) as process:
        assert process.stdout is not None and process.stderr is not None
        job_id = (await process.stdout.readline()).decode().strip()
        await read_until(process.stderr, "step 2 of 400")

        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), WITHIN_S)

    assert process.returncode == 130
    assert f"stopped following; job {job_id} keeps running" in err.decode()
    assert "Traceback" not in err.decode()
    job = await api.get(job_id)
    assert (job.status, job.cancel_requested_at) == ("running", None)
    await api.cancel(job_id)


async def test_ctrl_c_with_cancel_on_interrupt_cancels_the_job(
    live: Live, api: AsyncClient
) -> None:
    follow = ("submit", "sleep_steps", "steps=400", "delay_s=0.05", "-f", "--cancel-on-interrupt")
    async with running(live, *follow) as process:
        assert process.stdout is not None and process.stderr is not None
        job_id = (await process.stdout.readline()).decode().strip()
        await read_until(process.stderr, "step 2 of 400")

        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), WITHIN_S)

    assert process.returncode == 130
    assert f"cancel requested; job {job_id} stops within a second" in err.decode()
    assert (await api.wait(job_id, timeout=WITHIN_S)).status == "cancelled"


# --- jobs, show, watch, cancel, retry, tasks, workers ---------------------------------------


async def test_inspect_and_act_on_jobs(live: Live, api: AsyncClient) -> None:
    queue = f"parked-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    submitted = await tidings(live, "submit", "noop", "--queue", queue, "--priority", "3")
    assert submitted.code == 0, submitted.err
    job_id = submitted.out.strip()
    assert f"tidings watch {job_id}" in submitted.err

    table, listed, shown = await asyncio.gather(
        tidings(live, "jobs", "--queue", queue),
        tidings(live, "jobs", "--queue", queue, "--json"),
        tidings(live, "show", job_id),
    )
    assert table.code == listed.code == shown.code == 0
    header, row = table.out.strip().splitlines()
    assert header.split() == ["ID", "TASK", "STATUS", "TRY", "AGE", "QUEUE", "PROGRESS"]
    cells = row.split()
    assert (cells[:4], cells[5]) == ([job_id, "noop", "queued", "1/3"], queue)
    page = json.loads(listed.out)
    assert [job["id"] for job in page["jobs"]] == [job_id]
    assert (page["jobs"][0]["priority"], page["next_cursor"]) == (3, None)
    assert re.search(r"status\s+queued", shown.out)
    assert re.search(rf"queue\s+{queue} \(priority 3\)", shown.out)

    cancelled = await tidings(live, "cancel", job_id)
    assert (cancelled.code, cancelled.err.strip()) == (0, f"cancelled job {job_id}")
    again = await tidings(live, "cancel", job_id)
    assert again.code == exits.REFUSED
    assert "only queued, retrying or running jobs can be cancelled (409)" in one_line_error(again)

    retried = await tidings(live, "retry", job_id)
    assert retried.code == 0
    assert retried.err.strip() == f"job {job_id} is queued again: attempt 2 of 3"
    assert (await api.get(job_id)).attempt == 2
    await api.cancel(job_id)


async def test_jobs_finds_by_the_start_or_a_part_of_a_queue_name(
    live: Live, api: AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    wanted = await api.submit("noop", queue=f"parked-{tag}-a")  # no worker consumes these
    other = await api.submit("noop", queue=f"held-{tag}-b")
    by_prefix, by_part, too_short = await asyncio.gather(
        tidings(live, "jobs", "--queue-prefix", f"parked-{tag}", "--json"),
        tidings(live, "jobs", "--queue-contains", f"{tag}-b", "--json"),
        tidings(live, "jobs", "--queue-contains", "ab"),
    )
    assert by_prefix.code == by_part.code == 0, (by_prefix.err, by_part.err)
    assert [job["id"] for job in json.loads(by_prefix.out)["jobs"]] == [wanted.id]
    assert [job["id"] for job in json.loads(by_part.out)["jobs"]] == [other.id]
    assert too_short.code != 0 and "queue_contains" in too_short.err
    await api.bulk_cancel([wanted.id, other.id])


async def test_watch_follows_an_existing_job_to_its_end(live: Live, api: AsyncClient) -> None:
    job = await api.submit("sleep_steps", steps=3, args={"delay_s": 0.05})
    watched = await tidings(live, "watch", job.id)
    assert watched.code == 0, watched.err
    assert json.loads(watched.out) == {"steps": 3}
    assert "step 3 of 3" in watched.err

    failed = await api.submit("fail")
    assert (await tidings(live, "watch", failed.id)).code == 1


async def test_tasks_workers_and_queues_are_tables(live: Live) -> None:
    tasks, workers, queues = await asyncio.gather(
        tidings(live, "tasks"), tidings(live, "workers"), tidings(live, "queues")
    )
    assert tasks.code == workers.code == queues.code == 0
    assert "sleep_steps" in tasks.out and "steps: integer = 10" in tasks.out
    header, row = workers.out.strip().splitlines()
    assert header.split()[:6] == ["WORKER", "HOST", "PID", "QUEUES", "CONCURRENCY", "RUNNING"]
    assert row.split()[5].isdigit()
    header, *rows = queues.out.strip().splitlines()
    assert header.split() == ["QUEUE", "DUE", "SCHEDULED", "RUNNING", "OLDEST", "WORKERS", "SLOTS"]
    assert "default" in {line.split()[0] for line in rows}


# --- failures: one clear line and an exit status --------------------------------------------


async def test_failures_are_one_clear_line_with_a_non_zero_status(live: Live) -> None:
    missing = str(uuid.uuid4())
    down = f"http://127.0.0.1:{free_port()}"
    unknown, unreachable, bad_key, no_key, bad_args, usage = await asyncio.gather(
        tidings(live, "show", missing),
        tidings(live, "--url", down, "jobs"),
        tidings(live, "--api-key", "tdk_0000_wrong", "jobs"),
        tidings(live, "tasks", TIDINGS_API_KEY=""),
        tidings(live, "submit", "sleep_steps", "steps=lots"),
        tidings(live, "submit", "sleep_steps", "not-a-pair"),
    )

    assert unknown.code == exits.REFUSED
    assert one_line_error(unknown) == f"error: no job with id '{missing}' (404)"

    assert unreachable.code == exits.UNREACHABLE
    assert one_line_error(unreachable) == (
        f"error: cannot reach the tidings server at {down} (connection refused). "
        "Is the server running? Set --url or TIDINGS_URL."
    )

    assert bad_key.code == exits.REFUSED
    assert "refused the request (401): the API key is unknown or revoked" in one_line_error(bad_key)
    assert "--api-key" in bad_key.err
    assert no_key.code == exits.REFUSED
    assert "(401): a valid API key" in one_line_error(no_key)

    assert bad_args.code == exits.REFUSED
    assert "args.steps" in one_line_error(bad_args) and "(422)" in bad_args.err

    assert usage.code == 2
    assert "'not-a-pair' is not KEY=VALUE" in usage.err


# --- output for programs, human times, retries, completion, version -------------------------


async def test_version() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.cli",
        "--version",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), WITHIN_S)
    assert process.returncode == 0
    assert out.decode().strip() == f"tidings, version {version('tidings')}"


async def test_every_read_command_prints_json_with_o_json_or_json(
    live: Live, api: AsyncClient
) -> None:
    queue = f"parked-{uuid.uuid4().hex[:8]}"
    submitted = await tidings(live, "submit", "noop", "--queue", queue, "-o", "json")
    assert submitted.code == 0, submitted.err
    job = json.loads(submitted.out)
    assert (job["task"], job["queue"], job["status"]) == ("noop", queue, "queued")

    listed, shown, tasks, workers, queues, cancelled = await asyncio.gather(
        tidings(live, "jobs", "--queue", queue, "--json"),
        tidings(live, "show", job["id"], "-o", "json"),
        tidings(live, "tasks", "--json"),
        tidings(live, "workers", "-o", "json"),
        tidings(live, "queues", "--json"),
        tidings(live, "cancel", job["id"], "--json"),
    )
    for run in (listed, shown, tasks, workers, queues, cancelled):
        assert run.code == 0, run.err
    assert [item["id"] for item in json.loads(listed.out)["jobs"]] == [job["id"]]
    assert json.loads(shown.out)["id"] == job["id"]
    assert "sleep_steps" in {task["name"] for task in json.loads(tasks.out)["tasks"]}
    [worker] = json.loads(workers.out)["workers"]
    assert {"id", "queues", "heartbeat_at", "running"} <= worker.keys()
    assert "default" in {row["queue"] for row in json.loads(queues.out)["queues"]}
    assert json.loads(cancelled.out)["status"] == "cancelled"


async def test_follow_and_watch_print_one_json_object_per_event(
    live: Live, api: AsyncClient
) -> None:
    followed = await tidings(
        live, "submit", "sleep_steps", "steps=3", "delay_s=0.01", "--follow", "-o", "json"
    )
    assert followed.code == 0, followed.err
    events = json_lines(followed.out)  # the events alone: no id line, no result document
    assert [event["kind"] for event in events] == [
        "queued",
        "started",
        "progress",
        "progress",
        "progress",
        "succeeded",
    ]
    assert [event["seq"] for event in events] == list(range(1, 7))
    assert events[-1]["data"]["result"] == {"steps": 3}

    watched = await tidings(live, "watch", str(events[0]["job_id"]), "--json")
    assert watched.code == 0
    assert json_lines(watched.out) == events

    failed = await api.submit("fail")
    watched_failure = await tidings(live, "watch", failed.id, "--json")
    assert watched_failure.code == 1
    assert json_lines(watched_failure.out)[-1]["kind"] == "failed"


async def test_args_as_json_go_in_args_json_and_a_bare_object_says_so(live: Live) -> None:
    run = await tidings(live, "submit", "noop", '{"steps": 1}')
    assert run.code == 2
    assert "'{\"steps\": 1}' is not KEY=VALUE (a JSON object of args goes in --args-json)" in (
        run.err
    )


async def test_retries_show_the_wait_in_human_time_and_the_success_its_attempt(
    live: Live,
) -> None:
    run = await tidings(live, "submit", "flaky", "fail_times=2", "--follow")

    assert run.code == 0, run.err
    retries = [line for line in run.err.splitlines() if line.startswith("retrying")]
    assert len(retries) == 2
    for line in retries:
        assert re.search(r"failed: FlakyError: .*; next attempt in \d+\.\d\ds$", line), line
    assert not ISO_TIME.search(run.err)
    [succeeded] = [line for line in run.err.splitlines() if line.startswith("succeeded")]
    assert re.search(r"in \d+\.\d\ds \(attempt 3; \d+\.\d\ds since attempt 1 started\)", succeeded)
    assert "✓ succeeded on attempt 3 of 5" in run.err
    assert json.loads(run.out.split("\n", 1)[1]) == {"attempts": 3}


async def test_shell_completion_offers_the_servers_task_names(live: Live) -> None:
    def completing(*words: str) -> dict[str, str]:
        return {
            "_TIDINGS_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(["tidings", *words]),
            "COMP_CWORD": str(len(words)),
        }

    task, option = await asyncio.gather(
        tidings(live, **completing("submit", "sle")),
        tidings(live, **completing("jobs", "--task", "no")),
    )
    assert (task.code, task.out.split()) == (0, ["plain,sleep_steps"])
    assert (option.code, option.out.split()) == (0, ["plain,noop"])

    down = await tidings(
        live, **completing("submit", "sle"), TIDINGS_URL=f"http://127.0.0.1:{free_port()}"
    )
    assert (down.code, down.out.split(), down.err) == (0, [], "")  # nothing offered or said
