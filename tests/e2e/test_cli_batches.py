"""`tidings batch …` as a subprocess against live server and worker processes, with API keys
on: submitting a JSON Lines file, following it with one bar, showing, listing, cancelling
and retrying batches, and `tidings show` naming a job's batch and dependencies."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.test_cli import ANSI, Live, last_bar, running, tidings
from tests.support.servers import free_port, spawn
from tidings.cli import exits
from tidings.client import AsyncClient, BatchJobEvent
from tidings.core import keys
from tidings.core.settings import Settings

pytestmark = pytest.mark.e2e

WITHIN_S = 30.0
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "140"}


@pytest.fixture(scope="module")
def process_settings(settings: Settings) -> Settings:
    return replace(settings, port=free_port(), log_level="info", auth="keys", concurrency=4)


@pytest.fixture(scope="module")
async def live(process_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Live]:
    server = await spawn("tidings.server", process_settings)
    worker = await spawn("tidings.worker", process_settings)
    await asyncio.gather(server.wait_for_line("server.ready"), worker.wait_for_line("worker.ready"))
    key = await keys.create_key(pool, "default", "cli batch tests")
    yield Live(f"http://127.0.0.1:{process_settings.port}", key.secret)
    assert await worker.stop() == 0, worker.output
    assert await server.stop() == 0, server.output


@pytest.fixture(scope="module")
async def api(live: Live) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(live.url, api_key=live.api_key, timeout_s=WITHIN_S) as client:
        yield client


def jsonl(tmp_path: Path, *jobs: object, blank_lines: bool = False) -> str:
    """A batch file of `jobs`, one a line (with blank lines between them if asked)."""
    path = tmp_path / f"batch-{uuid.uuid4().hex[:6]}.jsonl"
    joiner = "\n\n" if blank_lines else "\n"
    path.write_text(joiner.join(json.dumps(job) for job in jobs) + "\n")
    return str(path)


def steps(n: int, ref: str | None = None, **extra: object) -> dict[str, object]:
    job: dict[str, object] = {"task": "sleep_steps", "args": {"steps": n, "delay_s": 0.05}}
    if ref:
        job["ref"] = ref
    return {**job, **extra}


async def test_submit_follow_draws_one_bar_for_the_batch_and_exits_0(
    live: Live, api: AsyncClient, tmp_path: Path
) -> None:
    file = jsonl(
        tmp_path,
        steps(4, "a"),
        steps(4, "b"),
        {"task": "noop", "depends_on": ["a", "b"]},
        blank_lines=True,
    )
    run = await tidings(live, "batch", "submit", file, "--name", "nightly", "--follow", **TERMINAL)

    assert run.code == exits.SUCCEEDED, run.err
    batch_id = run.out.strip()
    screen = ANSI.sub("", run.err)
    assert "\x1b[" in run.err and "━" in screen  # a bar redrawn in place
    bars = {frame.strip() for frame in re.split(r"[\r\n]", screen) if "━" in frame}
    assert all("/3" in bar for bar in bars)  # one bar, for the three members
    final = last_bar(run.err)
    assert final.startswith("✓") and "100% 3/3" in final and "✓ 3 succeeded" in final
    assert "✓ all 3 succeeded" in screen
    batch = await api.get_batch(batch_id)
    assert (batch.name, batch.status, batch.counts.succeeded) == ("nightly", "finished", 3)


async def test_a_failing_member_is_named_and_the_exit_status_is_1(
    live: Live, tmp_path: Path
) -> None:
    file = jsonl(tmp_path, {"task": "fail", "args": {"message": "out of paper"}}, {"task": "noop"})
    run = await tidings(live, "batch", "submit", file, "-f")

    assert run.code == exits.JOB_FAILED, run.err
    batch_id = run.out.strip()
    assert "✗ failed" in run.err  # the member's line, in a pipe
    assert "✗ 1 failed, 0 cancelled of 2" in run.err
    assert "PermanentError: out of paper" in run.err
    assert f"tidings jobs --batch {batch_id} --status failed" in run.err
    assert "Traceback" not in run.err

    shown = await tidings(live, "batch", "show", batch_id)
    assert shown.code == 0, shown.err
    assert re.search(r"status\s+finished", shown.out)
    assert "✓ 1 succeeded" in shown.out and "✗ 1 failed" in shown.out
    assert "PermanentError: out of paper" in shown.out

    retried = await tidings(live, "batch", "retry", batch_id)
    assert (retried.code, retried.err.strip()) == (0, f"retried 1 member of batch {batch_id}")


async def test_follow_with_json_prints_every_event_as_a_line(live: Live, tmp_path: Path) -> None:
    run = await tidings(
        live, "batch", "submit", jsonl(tmp_path, {"task": "noop"}), "--follow", "-o", "json"
    )
    assert run.code == 0, run.err
    events = [json.loads(line) for line in run.out.splitlines()]
    jobs = [event for event in events if event["event"] == "job"]
    assert [event["seq"] for event in jobs] == list(range(1, len(jobs) + 1))
    assert [event["kind"] for event in jobs] == ["queued", "started", "succeeded"]
    assert events[-1]["event"] == "batch.finished"


async def test_a_bad_line_is_named_and_nothing_is_submitted(
    live: Live, api: AsyncClient, tmp_path: Path
) -> None:
    before = await api.list_batches(limit=1)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task": "noop"}\n\n{"task": "noop", "args": \n')
    bad_json = await tidings(live, "batch", "submit", str(path))
    unknown = await tidings(
        live, "batch", "submit", jsonl(tmp_path, {"task": "noop"}, {"task": "no_such_task"})
    )

    assert bad_json.code == 2 and "line 3: not JSON" in bad_json.err
    assert unknown.code == exits.REFUSED
    assert "line 2" in unknown.err and "(422)" in unknown.err
    after = await api.list_batches(limit=1)
    assert [b.id for b in after.batches] == [b.id for b in before.batches]


async def test_show_list_cancel_and_json_output(
    live: Live, api: AsyncClient, tmp_path: Path
) -> None:
    queue = f"parked-{uuid.uuid4().hex[:8]}"
    file = jsonl(
        tmp_path,
        {"task": "noop", "queue": queue, "ref": "first"},
        {"task": "noop", "queue": queue, "depends_on": ["first"]},
    )
    submitted = await tidings(live, "batch", "submit", file, "--name", "parked", "-o", "json")
    assert submitted.code == 0, submitted.err
    batch = json.loads(submitted.out)
    first, second = batch["job_ids"]

    shown, listed, listed_json, as_json, job = await asyncio.gather(
        tidings(live, "batch", "show", batch["id"]),
        tidings(live, "batch", "list", "--limit", "5"),
        tidings(live, "batch", "list", "--json"),
        tidings(live, "batch", "show", batch["id"], "--json"),
        tidings(live, "show", second),
    )
    assert re.search(r"status\s+open", shown.out)
    assert "… 1 queued" in shown.out and "⏸ 1 waiting" in shown.out
    header = listed.out.splitlines()[0].split()
    assert header == ["ID", "NAME", "STATUS", "PROGRESS", "AGE", "MEMBERS"]
    assert batch["id"] in listed.out.splitlines()[1]
    assert json.loads(listed_json.out)["batches"][0]["id"] == batch["id"]
    assert json.loads(as_json.out)["counts"]["waiting"] == 1
    assert re.search(rf"batch\s+{batch['id']}", job.out)
    assert re.search(rf"depends on\s+{first}", job.out)
    assert re.search(r"status\s+waiting", job.out)

    members = await tidings(live, "jobs", "--batch", batch["id"], "--status", "waiting", "--json")
    assert [item["id"] for item in json.loads(members.out)["jobs"]] == [second]

    cancelled = await tidings(live, "batch", "cancel", batch["id"])
    assert cancelled.err.strip() == f"cancelled 2 members of batch {batch['id']}"
    assert (await api.get_batch(batch["id"])).counts.cancelled == 2
    missing = await tidings(live, "batch", "show", str(uuid.uuid4()))
    assert missing.code == exits.REFUSED and "(404)" in missing.err


async def test_ctrl_c_stops_following_and_leaves_the_batch_running(
    live: Live, api: AsyncClient, tmp_path: Path
) -> None:
    file = jsonl(tmp_path, steps(200), steps(200))
    async with running(live, "batch", "submit", file, "--follow") as process:
        assert process.stdout is not None and process.stderr is not None
        batch_id = (await process.stdout.readline()).decode().strip()
        # Wait until the batch is under way, as its own stream says.
        async with asyncio.timeout(WITHIN_S), aclosing(api.stream_batch(batch_id)) as events:
            async for event in events:
                if isinstance(event, BatchJobEvent) and event.kind == "started":
                    break
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), WITHIN_S)

    assert process.returncode == exits.INTERRUPTED
    assert f"stopped following; batch {batch_id} keeps running" in err.decode()
    assert "Traceback" not in err.decode()
    assert (await api.get_batch(batch_id)).status == "open"
    await api.cancel_batch(batch_id)
