"""How the CLI shows batches: the counts line, `tidings batch show`, `tidings batch list`.

As in `render`, names and metadata a user wrote go in as `Text` or JSON, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from tidings.cli.render import (
    STATUS_STYLES,
    as_json,
    duration,
    listing,
    seconds_between,
    since,
)
from tidings.client.batch_models import Batch, BatchCounts
from tidings.client.models import Job, Status

BATCH_STYLES = {"open": "blue", "finished": "green"}
# How `counts_text` marks each status, in the order it lists them.
COUNT_MARKS: dict[Status, str] = {
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "■",
    "running": "▶",
    "retrying": "↻",
    "queued": "…",
    "waiting": "⏸",
}


def counts_text(counts: BatchCounts, *, all_statuses: bool = False) -> Text:
    """ "✓ 12 succeeded  ✗ 1 failed  ▶ 3 running": the statuses that have members (or all)."""
    text = Text()
    for status, mark in COUNT_MARKS.items():
        count = counts.of(status)
        if not count and not all_statuses:
            continue
        if text:
            text.append("  ")
        text.append(f"{mark} {count} {status}", style=STATUS_STYLES.get(status, ""))
    return text


def batch_label(batch: Batch) -> Text:
    """The batch's name if it has one, else nothing (ids are shown beside it)."""
    return Text(batch.name or "", overflow="ellipsis", no_wrap=True)


def batch_status_text(batch: Batch) -> Text:
    return Text(batch.status, style=BATCH_STYLES.get(batch.status, ""))


def progress_of(batch: Batch) -> str:
    """ "40% 4/10 done"."""
    return f"{batch.progress.fraction:.0%} {batch.progress.done}/{batch.total} done"


def batch_detail(batch: Batch, failed: Iterable[Job] = ()) -> RenderableType:
    """`tidings batch show`: the batch's fields, counts per status, and failed members."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    rows: list[tuple[str, RenderableType]] = [("id", batch.id)]
    if batch.name:
        rows.append(("name", Text(batch.name)))
    rows += [
        ("status", batch_status_text(batch)),
        ("progress", progress_of(batch)),
        ("members", counts_text(batch.counts, all_statuses=True)),
    ]
    if batch.eta_s is not None and not batch.finished:
        rows.append(("eta", duration(batch.eta_s)))
    rows += [
        ("created", since(batch.created_at) + " ago" if batch.created_at else "-"),
        ("run time", duration(seconds_between(batch.started_at, batch.finished_at))),
    ]
    for name, value in rows:
        fields.add_row(name, value)
    parts: list[RenderableType] = [fields]
    if batch.metadata:
        parts += [Text("metadata", style="bold"), as_json(batch.metadata)]
    failed = list(failed)
    if failed:
        parts.append(Text("failed members", style="bold red"))
        for job in failed:
            line = Text(f"{job.id}  ")
            line.append(job.task)
            if job.error is not None:
                line.append(f"  {job.error}", style="red")
            parts.append(line)
    return Group(*parts)


def batches_table(batches: Iterable[Batch]) -> Table:
    """`tidings batch list`: one row per batch, newest first."""
    table = listing(
        Column("ID", no_wrap=True, min_width=36),
        Column("NAME", no_wrap=True, overflow="ellipsis", max_width=24),
        Column("STATUS", no_wrap=True),
        Column("PROGRESS", no_wrap=True),
        Column("AGE", no_wrap=True),
        Column("MEMBERS", no_wrap=True, overflow="ellipsis"),
    )
    for batch in batches:
        table.add_row(
            batch.id,
            batch_label(batch),
            batch_status_text(batch),
            progress_of(batch),
            since(batch.created_at),
            counts_text(batch.counts),
        )
    return table
