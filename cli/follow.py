"""Following one job from the CLI: a live progress bar on a terminal, one line per event
elsewhere, or one JSON object per event for programs (`-o json`).

Events come from `Client.stream`, so a dropped connection is resumed without a gap. Ctrl-C
stops following (exit 130) and leaves the job running, unless the user asked for the job
to be cancelled with it.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import datetime
from types import TracebackType
from typing import Self

import click
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID
from rich.text import Text

from tidings.cli import exits
from tidings.cli.output import print_json_line
from tidings.cli.render import STATUS_STYLES, duration, number, say, seconds_between
from tidings.client.errors import Conflict
from tidings.client.models import Event, Job, parse_time
from tidings.client.sync import Client

# What the bar shows in place of its spinner once the job has ended.
END_MARKS = {"succeeded": ("✓", "green"), "failed": ("✗", "red"), "cancelled": ("■", "magenta")}


def retry_in_s(event: Event) -> float | None:
    """How long after a `retrying` event the next attempt starts (by the server's clock)."""
    data = event.data if isinstance(event.data, dict) else {}
    delay = data.get("delay_s")
    if isinstance(delay, int | float):
        return float(delay)
    return seconds_between(event.at, parse_time(data.get("retry_at")))


def describe(event: Event, first_started_at: datetime | None = None) -> Text:
    """One line for one event: its kind, then what it says. `first_started_at` (when the
    first attempt started) lets a success on a later attempt say how long it all took."""
    line = Text(f"{event.kind:<9} ", style=STATUS_STYLES.get(event.status or "", ""))
    data = event.data if isinstance(event.data, dict) else {}
    if event.kind == "progress":
        fraction = event.fraction
        line.append(f"{fraction:>4.0%} " if fraction is not None else "")
        if event.current is not None:
            total = f"/{number(event.total)}" if event.total is not None else ""
            line.append(f"{number(event.current)}{total} ")
        line.append(event.message or "")
    elif event.kind == "started":
        line.append(f"attempt {event.attempt}")
    elif event.kind == "retrying":
        line.append(f"attempt {event.attempt} failed: {event.error}")
        wait_s = retry_in_s(event)
        if wait_s is not None:
            line.append(f"; next attempt in {duration(max(0.0, wait_s))}")
    elif event.kind == "succeeded":
        run_s = data.get("run_s")
        line.append(f"in {duration(run_s)}" if isinstance(run_s, int | float) else "")
        if event.attempt is not None and event.attempt > 1:
            # run_s is this attempt's alone: say so, and how long the attempts took in all.
            overall = seconds_between(first_started_at, event.at)
            since = f"; {duration(overall)} since attempt 1 started" if overall else ""
            line.append(f" (attempt {event.attempt}{since})")
    elif event.kind == "log":
        level = data.get("level")
        line.append(f"{level}: " if isinstance(level, str) and level != "info" else "")
        line.append(event.message or "")
    elif event.kind == "failed":
        line.append(str(event.error or event.message or ""))
    elif event.kind == "queued" and event.task:
        line.append(f"{event.task} on {event.queue}")
    elif event.kind == "requeued":
        line.append(str(data.get("reason") or event.message or ""))
    else:
        line.append(event.message or "")
    return line


class TerminalView:
    """Something shown on the terminal between `with view:` entering and leaving."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Take over the terminal, if the view draws one."""

    def stop(self) -> None:
        """Give the terminal back."""


class EventView(TerminalView):
    """Where followed events are shown, between `with view:` entering and leaving."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started_at: datetime | None = None  # of the attempt under way
        self.first_started_at: datetime | None = None

    def saw_start(self, event: Event) -> None:
        """Note when an attempt (and the first of them) started."""
        self.started_at = event.at
        if self.first_started_at is None:
            self.first_started_at = event.at

    def show(self, event: Event) -> None:
        raise NotImplementedError


def remaining_s(event: Event, started_at: datetime | None) -> float | None:
    """Time left after `event`, from the job's own pace: elapsed * (1 - f) / f.

    Elapsed time comes from the server's timestamps (started -> this event), so a client
    whose clock is off still shows the right time left.
    """
    fraction = event.fraction
    if not fraction or fraction >= 1 or started_at is None or event.at is None:
        return None
    elapsed = (event.at - started_at).total_seconds()
    return max(0.0, elapsed * (1 - fraction) / fraction)


class LineView(EventView):
    """Plain lines, for pipes, logs and CI: nothing is redrawn."""

    def show(self, event: Event) -> None:
        if event.kind == "started":
            self.saw_start(event)
        line = describe(event, self.first_started_at)
        eta = remaining_s(event, self.started_at) if event.kind == "progress" else None
        if eta is not None:
            line.append(f" (eta {duration(eta)})", style="cyan")
        self.console.print(line, soft_wrap=True)


class JsonLinesView(EventView):
    """Every event as one JSON object per line on stdout, for programs."""

    def show(self, event: Event) -> None:
        print_json_line(event.raw)


class StateColumn(SpinnerColumn):
    """The spinner while the job may still move; a mark that stays still once it ended, or
    nothing once following stopped (a frozen spinner would say it is still working)."""

    def render(self, task: Task) -> RenderableType:
        ended = task.fields.get("ended")
        if isinstance(ended, str):
            mark, style = END_MARKS.get(ended, ("·", ""))
            return Text(mark, style=style)
        if task.fields.get("stopped"):
            return Text(" ")
        return super().render(task)


class StatusColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        status = str(task.fields.get("status", ""))
        return Text(f"{status:<9}", style=STATUS_STYLES.get(status, ""))


class CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{task.percentage:>3.0f}% {number(task.completed)}/{number(task.total)}")


class EtaColumn(ProgressColumn):
    """Time left, counting down between progress events."""

    def render(self, task: Task) -> Text:
        eta_at = task.fields.get("eta_at")
        if not isinstance(eta_at, float) or task.finished:
            return Text("")
        return Text(f"eta {duration(max(0.0, eta_at - time.monotonic()))}", style="cyan")


class MessageColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        # Text, not markup: a task's message is shown exactly as the task wrote it.
        return Text(str(task.fields.get("message") or ""), overflow="ellipsis", no_wrap=True)


class BarView(EventView):
    """A live rich progress bar: fraction, count, ETA and the latest message."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            StateColumn(),
            StatusColumn(),
            BarColumn(),
            CountColumn(),
            EtaColumn(),
            MessageColumn(),
            console=console,
        )
        self.task: TaskID = self.progress.add_task("", total=None, status="queued", message="")

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        # The last frame stays on screen: it must not show a spinner caught mid-turn.
        self.progress.update(self.task, stopped=True, eta_at=None)
        self.progress.stop()

    def show(self, event: Event) -> None:
        update = self.progress.update
        if event.status:
            update(self.task, status=event.status)
        if event.terminal:
            update(self.task, ended=event.kind, eta_at=None)
        if event.kind == "started":
            self.saw_start(event)
            update(self.task, completed=0, message="", eta_at=None)
        elif event.kind == "progress":
            if event.total:
                update(self.task, total=event.total)
            update(
                self.task,
                completed=event.current or 0,
                message=event.message or "",
                eta_at=self._eta_at(event),
            )
        elif event.kind == "succeeded":
            total = self.progress.tasks[0].total
            update(self.task, completed=total or 1, total=total or 1, eta_at=None)
        if event.kind not in ("progress", "queued"):
            self.progress.console.print(describe(event, self.first_started_at), soft_wrap=True)

    def _eta_at(self, event: Event) -> float | None:
        """When the job should end, on this machine's monotonic clock."""
        left = remaining_s(event, self.started_at)
        return None if left is None else time.monotonic() + left


def follow(
    client: Client,
    job_id: str,
    *,
    err: Console,
    cancel_on_interrupt: bool,
    json_lines: bool = False,
) -> int:
    """Show the job's events until it ends; print its result (unless the events went out as
    JSON lines, the last of which carries it) or error; return the exit code."""
    view: EventView
    if json_lines:
        view = JsonLinesView(err)
    else:
        view = BarView(err) if err.is_interactive else LineView(err)
    try:
        with view, closing(client.stream(job_id)) as events:
            for event in events:
                view.show(event)
    except KeyboardInterrupt:
        return interrupted(client, job_id, err, cancel_on_interrupt=cancel_on_interrupt)
    return outcome(client.get(job_id), err=err, print_result=not json_lines)


def interrupted(client: Client, job_id: str, err: Console, *, cancel_on_interrupt: bool) -> int:
    """Ctrl-C while following: leave the job alone, or cancel it if asked to."""
    if not cancel_on_interrupt:
        say(
            err,
            f"stopped following; job {job_id} keeps running "
            f"(follow it again with: tidings watch {job_id})",
        )
        return exits.INTERRUPTED
    try:
        job = client.cancel(job_id)
    except Conflict as exc:
        say(err, f"nothing to cancel: {exc.message}")
        return exits.INTERRUPTED
    if job.status == "cancelled":
        say(err, f"cancelled job {job_id}")
    else:
        say(err, f"cancel requested; job {job_id} stops within a second")
    return exits.INTERRUPTED


def outcome(job: Job, *, err: Console, print_result: bool = True) -> int:
    """Print how the job ended (the result as JSON on stdout); 0 if it succeeded, else 1."""
    if job.status == "succeeded":
        line = Text("✓ succeeded", style="green")
        if job.attempt > 1:
            line.append(f" on attempt {job.attempt} of {job.max_attempts}")
        err.print(line, highlight=False)
        if print_result:
            # Plain JSON on stdout, so `tidings submit … --follow > result.json` works.
            click.echo(json.dumps(job.result, indent=2))
        return exits.SUCCEEDED
    if job.status == "failed":
        line = Text("✗ failed", style="red")
        line.append(f" after {job.attempt} of {job.max_attempts} attempts")
        if job.error is not None:
            line.append(f": {job.error}")
        err.print(line, soft_wrap=True)
        if job.error is not None and job.error.traceback:
            say(err, f"(the traceback: tidings show {job.id})")
        return exits.JOB_FAILED
    err.print(Text(f"✗ {job.status}", style=STATUS_STYLES.get(job.status, "")), soft_wrap=True)
    return exits.JOB_FAILED
