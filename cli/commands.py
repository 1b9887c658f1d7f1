"""`tidings submit | jobs | show | watch | cancel | retry | tasks | workers | queues`: the HTTP
API by hand.

Data goes to stdout (ids, tables, results as JSON) and everything addressed to the person
goes to stderr, so each command composes in a shell. Every command that prints data takes
`-o json` (or `--json`) for programs; task args go in as `KEY=VALUE` or `--args-json`.
Failures are one line on stderr and an exit status a script can test; tracebacks are for
bugs, not for a down server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
from rich.console import Console
from typing_extensions import Unpack

from tidings.cli import exits
from tidings.cli.completion import complete_task_names
from tidings.cli.output import output_option, print_json
from tidings.cli.render import (
    job_detail,
    jobs_table,
    queues_table,
    say,
    tasks_table,
    workers_table,
)
from tidings.client import JobFilters, errors
from tidings.client.models import STATUSES
from tidings.client.sync import Client


def console(*, stderr: bool = False) -> Console:
    """A console that wraps to the terminal, and not at all (within reason) into a pipe."""
    made = Console(stderr=stderr)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = PIPE_WIDTH
    return made


PIPE_WIDTH = 240


@dataclass
class Session:
    """What a command needs: where the server is, and consoles for data and for people."""

    url: str
    api_key: str | None
    out: Console = field(default_factory=console)
    err: Console = field(default_factory=lambda: console(stderr=True))
    _client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url, api_key=self.api_key)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def say(self, message: str) -> None:
        """A line for the person at the terminal (stderr), never parsed as markup."""
        say(self.err, message)


pass_session = click.make_pass_decorator(Session)


def fail(session: Session, error: errors.TidingsError) -> NoReturn:
    """Report a client error as one line and exit with its status."""
    session.say(f"error: {explain(error, session.url)}")
    code = exits.UNREACHABLE if isinstance(error, UNREACHABLE) else exits.REFUSED
    raise click.exceptions.Exit(code)


UNREACHABLE = (errors.ConnectionError, errors.Unavailable, errors.TooManyRequests)


def explain(error: errors.TidingsError, url: str) -> str:
    """What went wrong and, where there is one, what to do about it."""
    if isinstance(error, errors.ConnectionError):
        return f"{error.message}. Is the server running? Set --url or TIDINGS_URL."
    if isinstance(error, errors.Unauthorized):
        return (
            f"{url} refused the request (401): {error.message}. "
            "Pass --api-key or set TIDINGS_API_KEY."
        )
    if isinstance(error, errors.Forbidden):
        return f"not allowed (403): {error.message}"
    if isinstance(error, errors.Unavailable | errors.TooManyRequests):
        wait = f"; retry in {error.retry_after_s:g}s" if error.retry_after_s is not None else ""
        return f"the server cannot take this now ({error.status}): {error.message}{wait}"
    message = error.message
    if error.field is not None:
        message += f": {error.field}" + (f": {error.reason}" if error.reason else "")
    for item in _batch_errors(error.details):
        message += f"; {item}"
    return message if error.status is None else f"{message} ({error.status})"


def _batch_errors(details: Any) -> list[str]:
    if not isinstance(details, dict) or not isinstance(details.get("errors"), list):
        return []
    return [
        f"{_which(item)}: {item.get('field', '')} {item.get('reason', '')}".strip()
        for item in details["errors"]
        if isinstance(item, dict)
    ]


def _which(item: dict[str, Any]) -> str:
    """The job an error is about: the line of a batch file it came from, else its index."""
    return f"line {item['line']}" if "line" in item else f"job {item.get('index')}"


def parse_args(pairs: Sequence[str], json_args: str | None) -> dict[str, Any]:
    """Task args from `--args-json OBJECT` and `KEY=VALUE` pairs (values read as JSON if
    they can be)."""
    args: dict[str, Any] = {}
    if json_args is not None:
        try:
            loaded = json.loads(json_args)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--args-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--args-json")
        args.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            hint = " (a JSON object of args goes in --args-json)" if pair.startswith("{") else ""
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE{hint}", param_hint="KEY=VALUE")
        try:
            args[key] = json.loads(raw)
        except ValueError:
            args[key] = raw  # not JSON: the text as written
    return args


# --- commands ------------------------------------------------------------------------------


@click.command()
@click.argument("task", shell_complete=complete_task_names)
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--args-json", "json_args", metavar="OBJECT", help="Args as a JSON object.")
@click.option("--queue", help="Queue to run on (default: the task's).")
@click.option("--priority", type=click.IntRange(-10, 10), help="Higher runs first.")
@click.option("--delay", type=click.FloatRange(min=0), metavar="SECONDS", help="Run later.")
@click.option("--max-attempts", type=click.IntRange(min=1), help="Override the task's.")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="Per attempt.")
@click.option("--idempotency-key", help="Submitting the same key again returns the same job.")
@click.option("--follow", "-f", is_flag=True, help="Show live progress until the job ends.")
@click.option(
    "--cancel-on-interrupt", is_flag=True, help="With --follow: Ctrl-C also cancels the job."
)
@output_option
@pass_session
def submit(
    session: Session,
    task: str,
    pairs: tuple[str, ...],
    json_args: str | None,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    max_attempts: int | None,
    timeout: float | None,
    idempotency_key: str | None,
    follow: bool,
    cancel_on_interrupt: bool,
    json_output: bool,
) -> None:
    """Submit a TASK job with KEY=VALUE args; print its id (with -o json, the job).

    Values are read as JSON when they parse (steps=5, ok=true, ids='[1,2]'), else as text
    (name=report). With --follow, exit 0 if the job succeeds, 1 if it fails or is
    cancelled, 130 on Ctrl-C (the job keeps running unless --cancel-on-interrupt); with
    --follow -o json, stdout is the job's events, one JSON object per line.
    """
    if cancel_on_interrupt and not follow:
        raise click.UsageError("--cancel-on-interrupt only applies with --follow")
    job = session.client().submit(
        task,
        args=parse_args(pairs, json_args),
        queue=queue,
        priority=priority,
        delay_s=delay,
        max_attempts=max_attempts,
        timeout_s=timeout,
        idempotency_key=idempotency_key,
    )
    if not json_output:
        click.echo(job.id)
    elif not follow:
        print_json(job.raw)
    if follow:  # with -o json, the events alone (the first names the job)
        follow_job(session, job.id, cancel_on_interrupt, json_output)
    session.say(f"{job.status} {job.task} on queue {job.queue}; follow it: tidings watch {job.id}")


def follow_job(
    session: Session, job_id: str, cancel_on_interrupt: bool, json_output: bool
) -> NoReturn:
    # Imported here: the progress display is the heaviest import, and only these need it.
    from tidings.cli.follow import follow

    code = follow(
        session.client(),
        job_id,
        err=session.err,
        cancel_on_interrupt=cancel_on_interrupt,
        json_lines=json_output,
    )
    raise click.exceptions.Exit(code)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--cancel-on-interrupt", is_flag=True, help="Ctrl-C also cancels the job.")
@output_option
@pass_session
def watch(session: Session, job_id: str, cancel_on_interrupt: bool, json_output: bool) -> None:
    """Follow a job's progress until it ends (exit 0 succeeded, 1 failed or cancelled).

    With -o json, stdout is every event of the job, one JSON object per line.
    """
    follow_job(session, job_id, cancel_on_interrupt, json_output)


@click.command()
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this status.")
@click.option("--task", help="Only jobs of this task.", shell_complete=complete_task_names)
@click.option("--queue", help="Only jobs on this queue.")
@click.option("--task-prefix", metavar="TEXT", help="Only jobs whose task starts so.")
@click.option("--task-contains", metavar="TEXT", help="Only jobs whose task has this (3+).")
@click.option("--queue-prefix", metavar="TEXT", help="Only jobs whose queue starts so.")
@click.option("--queue-contains", metavar="TEXT", help="Only jobs whose queue has this (3+).")
@click.option("--batch", "batch_id", metavar="ID", help="Only the members of this batch.")
@click.option("--parent", "parent_id", metavar="ID", help="Only the children of this job.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--cursor", help="Continue from where a previous page ended.")
@output_option
@pass_session
def jobs(
    session: Session,
    limit: int,
    cursor: str | None,
    json_output: bool,
    **filters: Unpack[JobFilters],
) -> None:
    """List jobs, newest first."""
    page = session.client().list(limit=limit, cursor=cursor, **filters)
    if json_output:
        print_json({"jobs": [job.raw for job in page.jobs], "next_cursor": page.next_cursor})
        return
    if not page.jobs:
        session.say("no jobs")
        return
    session.out.print(jobs_table(page.jobs))
    if page.next_cursor:
        session.say(f"more: tidings jobs --cursor {page.next_cursor}")


@click.command()
@click.argument("job_id", metavar="ID")
@output_option
@pass_session
def show(session: Session, job_id: str, json_output: bool) -> None:
    """Show one job: status, progress, timing, args, and its result or error."""
    job = session.client().get(job_id)
    if json_output:
        print_json(job.raw)
    else:
        session.out.print(job_detail(job))


@click.command()
@click.argument("job_id", metavar="ID")
@output_option
@pass_session
def cancel(session: Session, job_id: str, json_output: bool) -> None:
    """Cancel a waiting or running job (with -o json, print the job)."""
    job = session.client().cancel(job_id)
    if json_output:
        print_json(job.raw)
    if job.status == "cancelled":
        session.say(f"cancelled job {job.id}")
    else:
        session.say(f"cancel requested; job {job.id} is {job.status} and stops within a second")


@click.command()
@click.argument("job_id", metavar="ID")
@output_option
@pass_session
def retry(session: Session, job_id: str, json_output: bool) -> None:
    """Run a failed or cancelled job again (with -o json, print the job)."""
    job = session.client().retry(job_id)
    if json_output:
        print_json(job.raw)
    session.say(f"job {job.id} is {job.status} again: attempt {job.attempt} of {job.max_attempts}")


@click.command()
@output_option
@pass_session
def tasks(session: Session, json_output: bool) -> None:
    """List the tasks workers have registered."""
    found = session.client().tasks()
    if json_output:
        print_json({"tasks": [task.raw for task in found]})
    elif not found:
        session.say("no tasks: start a worker (tidings worker)")
    else:
        session.out.print(tasks_table(found))


@click.command()
@output_option
@pass_session
def workers(session: Session, json_output: bool) -> None:
    """List the registered workers: queues, jobs running, heartbeats."""
    found = session.client().workers()
    if json_output:
        print_json({"workers": [worker.raw for worker in found]})
    elif not found:
        session.say("no workers: start one with `tidings worker`")
    else:
        session.out.print(workers_table(found))


@click.command()
@output_option
@pass_session
def queues(session: Session, json_output: bool) -> None:
    """List the queues: jobs due, scheduled and running, the oldest wait, workers."""
    found = session.client().queues()
    if json_output:
        print_json({"queues": [queue.raw for queue in found]})
    elif not found:
        session.say("no queues: nothing waits or runs, and no worker consumes one")
    else:
        session.out.print(queues_table(found))


COMMANDS = (submit, jobs, show, watch, cancel, retry, tasks, workers, queues)

__all__ = ["COMMANDS", "Session", "fail"]
