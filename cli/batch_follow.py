"""Following a batch from the CLI: one live progress bar for the whole batch on a terminal,
one line per member that ends elsewhere, or one JSON object per event for programs.

Events come from `Client.stream_batch`, so a dropped connection is resumed without a gap.
Ctrl-C stops following (exit 130) and leaves the batch running.
"""

from __future__ import annotations

import time
from contextlib import closing

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID
from rich.text import Text

from tidings.cli import exits
from tidings.cli.batch_render import counts_text
from tidings.cli.follow import END_MARKS, EtaColumn, StateColumn, TerminalView
from tidings.cli.output import print_json_line
from tidings.cli.render import STATUS_STYLES, duration, say, seconds_between
from tidings.client.batch_models import (
    Batch,
    BatchCounts,
    BatchEvent,
    BatchFinished,
    BatchJobEvent,
    BatchProgressEvent,
)
from tidings.client.models import TERMINAL_KINDS
from tidings.client.sync import Client

# Failed members `batch_outcome` names; the rest are a `tidings jobs` command away.
NAMED_FAILURES = 5


def event_name(event: BatchEvent) -> str:
    """The SSE event name `event` came as."""
    if isinstance(event, BatchJobEvent):
        return "job"
    return "progress" if isinstance(event, BatchProgressEvent) else "batch.finished"


def member_line(event: BatchJobEvent) -> Text:
    """ "failed    <job id> <task>": one member's transition."""
    mark = END_MARKS.get(event.kind, ("·", ""))[0]
    line = Text(f"{mark} {event.kind:<9} ", style=STATUS_STYLES.get(event.status or "", ""))
    line.append(f"{event.job_id} ")
    line.append(event.task or "")
    return line


class BatchView(TerminalView):
    """Where a followed batch is shown, between `with view:` entering and leaving."""

    def __init__(self, console: Console, batch: Batch) -> None:
        self.console = console
        self.batch = batch

    def show(self, event: BatchEvent) -> None:
        raise NotImplementedError


class BatchLineView(BatchView):
    """Plain lines, for pipes, logs and CI: each member that ends, and the batch's end."""

    def show(self, event: BatchEvent) -> None:
        if isinstance(event, BatchJobEvent) and event.kind in TERMINAL_KINDS:
            self.console.print(member_line(event), soft_wrap=True)


class BatchJsonLinesView(BatchView):
    """Every event as one JSON object per line on stdout, named by `event`."""

    def show(self, event: BatchEvent) -> None:
        print_json_line({"event": event_name(event), **event.raw})


class DoneColumn(ProgressColumn):
    """ "40% 4/10": the batch's fraction (running members' progress included) and how many
    members have ended."""

    def render(self, task: Task) -> Text:
        fraction = task.percentage if task.total else 0.0
        return Text(f"{fraction:>3.0f}% {task.fields.get('done', 0)}/{task.fields.get('of', 0)}")


class CountsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        counts = task.fields.get("counts")
        return counts_text(counts) if isinstance(counts, BatchCounts) else Text("")


class BatchBarView(BatchView):
    """One live rich progress bar for the batch: fraction, members ended, counts, ETA."""

    def __init__(self, console: Console, batch: Batch) -> None:
        super().__init__(console, batch)
        self.progress = Progress(
            StateColumn(),
            BarColumn(),
            DoneColumn(),
            CountsColumn(),
            EtaColumn(),
            console=console,
        )
        self.task: TaskID = self.progress.add_task("", total=max(batch.total, 1), of=batch.total)
        self._update(batch.counts, batch.total, batch.progress.done, batch.progress.fraction)
        self._eta(batch.eta_s)

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        # The last frame stays on screen: it must not show a spinner caught mid-turn.
        self.progress.update(self.task, stopped=True, eta_at=None)
        self.progress.stop()

    def show(self, event: BatchEvent) -> None:
        if isinstance(event, BatchProgressEvent):
            self._update(event.counts, event.total, event.progress.done, event.progress.fraction)
            self._eta(event.eta_s)
        elif isinstance(event, BatchFinished):
            self._update(event.counts, event.total, event.counts.ended, 1.0)
            ended = "failed" if event.counts.unsuccessful else "succeeded"
            self.progress.update(self.task, ended=ended, eta_at=None)
        elif event.kind in ("failed", "cancelled"):
            # Successes show in the bar; a member that did not make it is worth a line.
            self.progress.console.print(member_line(event), soft_wrap=True)

    def _update(self, counts: BatchCounts, total: int, done: int, fraction: float) -> None:
        size = max(total, 1)
        self.progress.update(
            self.task, total=size, completed=fraction * size, done=done, of=total, counts=counts
        )

    def _eta(self, eta_s: float | None) -> None:
        """When the batch should end, on this machine's monotonic clock."""
        eta_at = None if eta_s is None else time.monotonic() + eta_s
        self.progress.update(self.task, eta_at=eta_at)


def follow_batch(client: Client, batch: Batch, *, err: Console, json_lines: bool = False) -> int:
    """Show the batch's stream until it finishes; print how it went; return the exit code."""
    view: BatchView
    try:
        if json_lines:
            view = BatchJsonLinesView(err, batch)
        else:
            view = BatchBarView(err, batch) if err.is_interactive else BatchLineView(err, batch)
        with view, closing(client.stream_batch(batch.id)) as events:
            for event in events:
                view.show(event)
    except KeyboardInterrupt:
        say(
            err,
            f"stopped following; batch {batch.id} keeps running "
            f"(follow it again with: tidings batch watch {batch.id})",
        )
        return exits.INTERRUPTED
    return batch_outcome(client, client.get_batch(batch.id), err=err)


def batch_outcome(client: Client, batch: Batch, *, err: Console) -> int:
    """Print how the batch ended (naming a few failed members); 0 if every member
    succeeded, else 1."""
    counts = batch.counts
    took = seconds_between(batch.started_at or batch.created_at, batch.finished_at)
    in_time = f" in {duration(took)}" if took is not None else ""
    if not counts.unsuccessful:
        err.print(Text(f"✓ all {batch.total} succeeded{in_time}", style="green"), soft_wrap=True)
        return exits.SUCCEEDED
    line = Text(f"✗ {counts.failed} failed, {counts.cancelled} cancelled", style="red")
    line.append(f" of {batch.total}{in_time}; {counts.succeeded} succeeded")
    err.print(line, soft_wrap=True)
    if counts.failed:
        failed = client.list(batch_id=batch.id, status="failed", limit=NAMED_FAILURES).jobs
        for job in failed:
            named = Text(f"  {job.id} ")
            named.append(job.task)
            if job.error is not None:
                named.append(f": {job.error}")
            err.print(named, soft_wrap=True)
        say(err, f"(all of them: tidings jobs --batch {batch.id} --status failed)")
    return exits.JOB_FAILED
