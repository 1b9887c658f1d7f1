"""How the CLI shows jobs, tasks and workers: rich tables and panels built from client models.

Everything a server or a task wrote (messages, args, errors) goes in as `Text` or JSON, never
as rich markup, so a message like "[red]" is shown as written instead of styling the screen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.table import Column, Table
from rich.text import Text

from tidings.client.models import Job, Progress, QueueInfo, TaskInfo, WorkerInfo

STATUS_STYLES = {
    "waiting": "bright_black",
    "queued": "cyan",
    "retrying": "yellow",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def say(console: Console, message: str) -> None:
    """A plain line for the person: ids and messages are never read as markup."""
    console.print(message, markup=False, highlight=False, emoji=False, soft_wrap=True)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def number(value: float | None) -> str:
    """3.0 → "3", 2.5 → "2.5"."""
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def progress_text(progress: Progress) -> Text:
    """ "40% 2/5 step 2 of 5", or what is known of it."""
    parts = []
    if progress.fraction is not None:
        parts.append(f"{progress.fraction:.0%}")
    if progress.current is not None:
        parts.append(
            number(progress.current)
            if progress.total is None
            else f"{number(progress.current)}/{number(progress.total)}"
        )
    if progress.message:
        parts.append(progress.message)
    return Text(" ".join(parts))


def duration(seconds: float | None) -> str:
    """A short human duration: 0.42s, 12s, 3m05s, 2h01m."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def since(at: datetime | None, now: datetime | None = None) -> str:
    """Time elapsed since `at`, e.g. "12s"."""
    if at is None:
        return "-"
    return duration(max(0.0, ((now or datetime.now(UTC)) - at).total_seconds()))


def age(at: datetime | None, now: datetime | None = None) -> str:
    """How long ago `at` was, e.g. "12s ago"."""
    return "-" if at is None else f"{since(at, now)} ago"


def relative(at: datetime, now: datetime | None = None) -> str:
    """`at` from now: "in 3m05s" ahead, "12s ago" behind."""
    ahead_s = (at - (now or datetime.now(UTC))).total_seconds()
    return f"in {duration(ahead_s)}" if ahead_s > 0 else f"{duration(-ahead_s)} ago"


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """end - start in seconds, when both are known."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def run_time(job: Job) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or datetime.now(UTC)
    return (end - job.started_at).total_seconds()


def listing(*columns: Column) -> Table:
    """A borderless table with bold headings, the look of every CLI listing."""
    return Table(*columns, box=None, header_style="bold", pad_edge=False)


def jobs_table(jobs: Iterable[Job]) -> Table:
    """`tidings jobs`: one row per job, newest first."""
    # Rows never wrap: the id is whole (it is what `show` takes), the rest is cut short.
    table = listing(
        Column("ID", no_wrap=True, min_width=36),
        Column("TASK", no_wrap=True, overflow="ellipsis", min_width=8),
        Column("STATUS", no_wrap=True, min_width=9),
        Column("TRY", justify="right", no_wrap=True, min_width=3),
        Column("AGE", no_wrap=True, min_width=5),
        Column("QUEUE", no_wrap=True, overflow="ellipsis"),
        Column("PROGRESS", no_wrap=True, overflow="ellipsis"),
    )
    for job in jobs:
        table.add_row(
            job.id,
            Text(job.task),
            status_text(job.status),
            f"{job.attempt}/{job.max_attempts}",
            since(job.created_at),
            Text(job.queue),
            progress_text(job.progress),
        )
    return table


def as_json(value: Any) -> RenderableType:
    """A JSON value, highlighted on a terminal, plain otherwise."""
    return JSON(json.dumps(value, default=str))


def job_detail(job: Job) -> RenderableType:
    """`tidings show`: the job's fields, then its args and its result or error."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    rows: list[tuple[str, RenderableType]] = [
        ("id", job.id),
        ("task", Text(job.task)),
        ("status", status_text(job.status)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("queue", Text(f"{job.queue} (priority {job.priority})")),
        ("progress", progress_text(job.progress)),
    ]
    if job.progress.eta_s is not None and not job.terminal:
        rows.append(("eta", duration(job.progress.eta_s)))
    rows += [
        ("created", _when(job.created_at)),
        ("run at", _when(job.run_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("run time", run_time_text(job)),
    ]
    if job.worker_id:
        rows.append(("worker", Text(job.worker_id)))
    if job.cancel_requested_at and not job.terminal:
        rows.append(("cancel", f"requested {age(job.cancel_requested_at)}"))
    if job.cached_from:
        rows.append(("cached from", job.cached_from))
    rows += relations(job)
    for name, value in rows:
        fields.add_row(name, value)
    parts: list[RenderableType] = [fields, Text("args", style="bold"), as_json(job.args)]
    if job.status == "succeeded":
        parts += [Text("result", style="bold"), as_json(job.result)]
    if job.error is not None:
        parts += [Text("error", style="bold red"), Text(str(job.error))]
        if job.error.traceback:
            parts.append(Text(job.error.traceback, style="dim"))
    return Group(*parts)


def relations(job: Job) -> list[tuple[str, RenderableType]]:
    """`tidings show`'s rows for a job's batch, parent and dependencies, when it has them."""
    rows: list[tuple[str, RenderableType]] = []
    if job.batch_id:
        rows.append(("batch", f"{job.batch_id} (tidings batch show {job.batch_id})"))
    if job.parent_id:
        rows.append(("parent", job.parent_id))
    if job.depends_on:
        policy = job.on_dependency_failure
        shown = "\n".join(job.depends_on) + (f"\n(if one fails: {policy})" if policy else "")
        rows.append(("depends on", Text(shown)))
    return rows


def run_time_text(job: Job) -> str:
    """How long the job ran: its last attempt's time, which a retried job says it is."""
    ran = duration(run_time(job))
    if job.attempt > 1 and job.started_at is not None:
        return f"{ran} (attempt {job.attempt} alone)"
    return ran


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return f"{at.astimezone().strftime('%Y-%m-%d %H:%M:%S')} ({relative(at)})"


def task_args(schema: dict[str, Any]) -> Text:
    """A task's parameters from its JSON schema: "steps: integer = 10, delay_s: number = 0.5"."""
    required = set(schema.get("required", []))
    parts = []
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type") or (
            "|".join(str(option.get("type", "?")) for option in spec.get("anyOf", [])) or "any"
        )
        default = "" if name in required or "default" not in spec else f" = {spec['default']!r}"
        parts.append(f"{name}: {kind}{default}")
    return Text(", ".join(parts) or "-")


def tasks_table(tasks: Iterable[TaskInfo]) -> Table:
    """`tidings tasks`: what the workers offer."""
    table = listing(
        Column("TASK", no_wrap=True),
        Column("QUEUE"),
        Column("ARGS"),
        Column("TIMEOUT", justify="right"),
        Column("ATTEMPTS", justify="right"),
        Column("DESCRIPTION"),
    )
    for task in tasks:
        table.add_row(
            Text(task.name),
            Text(task.queue),
            task_args(task.args_schema),
            duration(task.defaults.get("timeout_s")),
            str(task.defaults.get("max_attempts", "-")),
            Text(task.description or ""),
        )
    return table


def workers_table(workers: Iterable[WorkerInfo]) -> Table:
    """`tidings workers`: who is alive, and when each was last heard from."""
    table = listing(
        Column("WORKER", no_wrap=True),
        Column("HOST"),
        Column("PID", justify="right"),
        Column("QUEUES"),
        Column("CONCURRENCY", justify="right"),
        Column("RUNNING", justify="right"),
        Column("HEARTBEAT", no_wrap=True),
        Column("STARTED", no_wrap=True),
    )
    for worker in workers:
        table.add_row(
            Text(worker.id),
            Text(worker.hostname or "-"),
            str(worker.pid or "-"),
            Text(", ".join(worker.queues)),
            str(worker.concurrency or "-"),
            "-" if worker.running is None else str(worker.running),
            age(worker.heartbeat_at),
            age(worker.started_at),
        )
    return table


def queues_table(queues: Iterable[QueueInfo]) -> Table:
    """`tidings queues`: the load on each queue, and who consumes it."""
    table = listing(
        Column("QUEUE", no_wrap=True),
        Column("DUE", justify="right"),
        Column("SCHEDULED", justify="right"),
        Column("RUNNING", justify="right"),
        Column("OLDEST", justify="right", no_wrap=True),
        Column("WORKERS", justify="right"),
        Column("SLOTS", justify="right"),
    )
    for queue in queues:
        table.add_row(
            Text(queue.queue),
            str(queue.due),
            str(queue.scheduled),
            str(queue.running),
            duration(queue.oldest_due_s),
            str(queue.workers),
            str(queue.slots),
        )
    return table
