"""`tidings batch submit | show | watch | list | cancel | retry`: batches by hand.

As elsewhere in the CLI, data goes to stdout (ids, tables, JSON with `-o json`) and what
is addressed to the person goes to stderr.
"""

from __future__ import annotations

import importlib
import json
from typing import IO, Any, NoReturn

import click

from tidings.cli.batch_file import BadBatchFile, BatchFile, read_batch_file
from tidings.cli.batch_render import batch_detail, batches_table
from tidings.cli.commands import Session, pass_session
from tidings.cli.output import output_option, print_json
from tidings.client import errors
from tidings.client.batch_models import Batch


@click.group()
def batch() -> None:
    """Submit a batch of jobs (some waiting for others), and follow or act on it."""


@batch.command()
@click.argument("file", type=click.File("r", encoding="utf-8"), metavar="FILE.jsonl")
@click.option("--name", help="A name to know the batch by.")
@click.option("--metadata-json", "metadata", metavar="OBJECT", help="Metadata, a JSON object.")
@click.option("--follow", "-f", is_flag=True, help="Show one live progress bar until it ends.")
@output_option
@pass_session
def submit(
    session: Session,
    file: IO[str],
    name: str | None,
    metadata: str | None,
    follow: bool,
    json_output: bool,
) -> None:
    """Submit the jobs of FILE.jsonl (one JSON object a line, `-` for stdin) as one batch;
    print its id (with -o json, the batch).

    Each line is what `tidings submit` sends: {"task": …, "args": {…}, "queue": …}; it may
    name itself with "ref" and wait for others with "depends_on": [ids or refs]. Blank
    lines are skipped; a bad line is an error naming it, and nothing is submitted. With
    --follow, exit 0 if every member succeeds, 1 if any failed or was cancelled, 130 on
    Ctrl-C (the batch keeps running); with --follow -o json, stdout is the batch's events,
    one JSON object per line.
    """
    try:
        jobs = read_batch_file(file)
    except BadBatchFile as exc:
        raise click.BadParameter(str(exc), param_hint="FILE.jsonl") from None
    if follow:
        # Loaded before the id is printed: a Ctrl-C once it is out stops a follower.
        importlib.import_module("tidings.cli.batch_follow")
    try:
        submitted = session.client().submit_batch(
            jobs.jobs, name=name, metadata=_metadata(metadata)
        )
    except errors.Invalid as exc:
        raise _naming_lines(exc, jobs) from None
    if not json_output:
        click.echo(submitted.id)
    elif not follow:
        print_json(submitted.raw)
    if follow:
        follow_batch(session, submitted, json_output)
    session.say(
        f"submitted {submitted.total} jobs as batch {submitted.id}; "
        f"follow it: tidings batch watch {submitted.id}"
    )


@batch.command()
@click.argument("batch_id", metavar="ID")
@output_option
@pass_session
def watch(session: Session, batch_id: str, json_output: bool) -> None:
    """Follow a batch until every member has ended (exit 0 all succeeded, 1 otherwise).

    With -o json, stdout is every event of the batch, one JSON object per line.
    """
    follow_batch(session, session.client().get_batch(batch_id), json_output)


@batch.command()
@click.argument("batch_id", metavar="ID")
@output_option
@pass_session
def show(session: Session, batch_id: str, json_output: bool) -> None:
    """Show one batch: progress, counts per status, ETA, and its failed members."""
    client = session.client()
    found = client.get_batch(batch_id)
    if json_output:
        print_json(found.raw)
        return
    failed = (
        client.list(batch_id=found.id, status="failed", limit=10).jobs
        if found.counts.failed
        else []
    )
    session.out.print(batch_detail(found, failed))
    if found.counts.failed > len(failed):
        session.say(f"more: tidings jobs --batch {found.id} --status failed")


@batch.command(name="list")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--cursor", help="Continue from where a previous page ended.")
@output_option
@pass_session
def list_batches(session: Session, limit: int, cursor: str | None, json_output: bool) -> None:
    """List batches, newest first."""
    page = session.client().list_batches(limit=limit, cursor=cursor)
    if json_output:
        print_json(
            {"batches": [found.raw for found in page.batches], "next_cursor": page.next_cursor}
        )
        return
    if not page.batches:
        session.say("no batches")
        return
    session.out.print(batches_table(page.batches))
    if page.next_cursor:
        session.say(f"more: tidings batch list --cursor {page.next_cursor}")


@batch.command()
@click.argument("batch_id", metavar="ID")
@output_option
@pass_session
def cancel(session: Session, batch_id: str, json_output: bool) -> None:
    """Cancel every member of a batch that has not ended (with -o json, print the batch)."""
    change = session.client().cancel_batch(batch_id)
    if json_output:
        print_json(change.batch.raw)
    session.say(f"cancelled {_members(change.count)} of batch {change.batch.id}")


@batch.command()
@click.argument("batch_id", metavar="ID")
@output_option
@pass_session
def retry(session: Session, batch_id: str, json_output: bool) -> None:
    """Run a batch's failed members again (with -o json, print the batch)."""
    change = session.client().retry_batch(batch_id)
    if json_output:
        print_json(change.batch.raw)
    session.say(f"retried {_members(change.count)} of batch {change.batch.id}")


def follow_batch(session: Session, followed: Batch, json_output: bool) -> NoReturn:
    # Imported here: the progress display is the heaviest import, and only these need it.
    from tidings.cli.batch_follow import follow_batch as follow

    code = follow(session.client(), followed, err=session.err, json_lines=json_output)
    raise click.exceptions.Exit(code)


def _members(count: int) -> str:
    return f"{count} member" + ("" if count == 1 else "s")


def _metadata(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        loaded = json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata-json") from None
    if not isinstance(loaded, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata-json")
    return loaded


def _naming_lines(error: errors.Invalid, jobs: BatchFile) -> errors.Invalid:
    """The server's complaint about job number i, told as the file's line of that job."""
    details = error.details if isinstance(error.details, dict) else {}
    blamed = [details, *(item for item in details.get("errors") or [] if isinstance(item, dict))]
    for item in blamed:
        line = jobs.line_of(item.get("index"))
        if line is not None:
            item["line"] = line
    return error


COMMANDS = (batch,)
