"""The CLI's batch pieces without a server: reading a batch file, naming its bad lines, and
drawing one bar for a whole batch from its stream's events."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from tidings.cli.batch_file import BadBatchFile, read_batch_file
from tidings.cli.batch_follow import BatchBarView, BatchLineView, event_name
from tidings.cli.batch_render import batch_detail, counts_text
from tidings.cli.batches import _naming_lines
from tidings.cli.commands import explain
from tidings.client import errors
from tidings.client.batch_models import (
    Batch,
    BatchCounts,
    BatchFinished,
    BatchJobEvent,
    BatchProgress,
    BatchProgressEvent,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_batch_file_skips_blank_lines_and_remembers_each_jobs_line() -> None:
    text = '{"task": "fetch", "ref": "a"}\n\n   \n{"task": "merge", "depends_on": ["a"]}\n'
    read = read_batch_file(io.StringIO(text))
    assert [job["task"] for job in read.jobs] == ["fetch", "merge"]
    assert read.lines == [1, 4]
    assert (read.line_of(1), read.line_of(2), read.line_of("x")) == (4, None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"task": "a"}\n{"task": ', "line 2: not JSON: "),
        ('{"task": "a"}\n\n[1, 2]', "line 3: a job must be a JSON object, not a list"),
        ('{"args": {}}', 'line 1: a job needs "task", the task\'s name'),
        ('{"task": "a", "args": [1]}', 'line 1: "args" must be a JSON object'),
        ('{"task": "a", "depends_on": "b"}', 'line 1: "depends_on" must be a list of job ids'),
        ("\n\n", "the file has no jobs"),
    ],
)
def test_a_bad_batch_file_names_its_line(text: str, message: str) -> None:
    with pytest.raises(BadBatchFile) as raised:
        read_batch_file(io.StringIO(text))
    assert str(raised.value).startswith(message)


def test_the_servers_complaint_about_a_job_names_the_files_line() -> None:
    read = read_batch_file(io.StringIO('{"task": "a"}\n\n{"task": "nope"}\n'))
    invalid = errors.Invalid(
        "1 of 2 jobs are invalid; nothing was submitted",
        status=422,
        details={"errors": [{"index": 1, "field": "task", "reason": "unknown task"}]},
    )
    assert explain(_naming_lines(invalid, read), "http://x") == (
        "1 of 2 jobs are invalid; nothing was submitted; line 3: task unknown task (422)"
    )


def counts(**given: int) -> BatchCounts:
    return BatchCounts(**given)


def test_counts_text_lists_the_statuses_that_have_members() -> None:
    assert counts_text(counts(succeeded=3, failed=1, waiting=2)).plain == (
        "✓ 3 succeeded  ✗ 1 failed  ⏸ 2 waiting"
    )
    assert "■ 0 cancelled" in counts_text(counts(), all_statuses=True).plain


def screen(console: Console) -> str:
    return ANSI.sub("", console.file.getvalue())  # type: ignore[attr-defined]


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=120)


def test_the_bar_moves_with_progress_names_failures_and_ends_with_a_mark() -> None:
    batch = Batch(id="b1", total=4, counts=counts(queued=4))
    console = terminal()
    with BatchBarView(console, batch) as view:
        view.show(
            BatchProgressEvent(
                "b1", 3, counts(succeeded=1, running=2, queued=1), 4, BatchProgress(1, 4, 0.5), 2.0
            )
        )
        view.show(BatchJobEvent(4, "b1", "job-9", "failed", "failed", "convert"))
        view.show(BatchFinished(7, "b1", counts(succeeded=3, failed=1), 4))
        view.progress.refresh()
    shown = screen(console)
    assert "✗ failed    job-9 convert" in shown
    last = [line for line in re.split(r"[\r\n]", shown) if "━" in line][-1]
    assert last.strip().startswith("✗")
    assert "100% 4/4" in last and "✓ 3 succeeded  ✗ 1 failed" in last


def test_in_a_pipe_each_member_that_ends_is_one_line() -> None:
    console = Console(file=io.StringIO(), width=200)
    view = BatchLineView(console, Batch(id="b1"))
    view.show(BatchJobEvent(1, "b1", "j1", "started", "running", "t"))
    view.show(BatchJobEvent(2, "b1", "j1", "succeeded", "succeeded", "t"))
    assert console.file.getvalue() == "✓ succeeded j1 t\n"  # type: ignore[attr-defined]
    assert event_name(BatchFinished(1, "b1", counts(), 0)) == "batch.finished"


def test_batch_show_lists_counts_and_failed_members() -> None:
    from tidings.client import Job

    batch = Batch.from_json(
        {
            "id": "b1",
            "name": "nightly",
            "status": "open",
            "total": 5,
            "counts": {"succeeded": 3, "failed": 1, "running": 1},
            "progress": {"done": 4, "total": 5, "fraction": 0.9},
            "eta_s": 3,
        }
    )
    failed = Job.from_json(
        {"id": "j9", "task": "convert", "status": "failed", "error": {"type": "E", "message": "m"}}
    )
    console = Console(file=io.StringIO(), width=120)
    console.print(batch_detail(batch, [failed]))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "nightly" in shown and "90% 4/5 done" in shown and "eta" in shown
    assert "✓ 3 succeeded" in shown and "⏸ 0 waiting" in shown
    assert "j9  convert  E: m" in shown
