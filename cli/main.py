"""The `tidings` command: client commands over HTTP, operator commands from `operator`."""

from __future__ import annotations

from typing import Any

import click

from tidings.cli import exits
from tidings.cli.batches import COMMANDS as BATCH_COMMANDS
from tidings.cli.commands import COMMANDS, Session, fail
from tidings.cli.operator import OPERATOR_COMMANDS
from tidings.client import errors
from tidings.client.config import API_KEY_VARIABLE, DEFAULT_URL, URL_VARIABLE


class TidingsGroup(click.Group):
    """Turns client errors and Ctrl-C into a message and an exit status, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.TidingsError as exc:
            fail(ctx.find_object(Session) or Session(DEFAULT_URL, None), exc)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(exits.INTERRUPTED) from None


@click.group(cls=TidingsGroup)
@click.version_option(package_name="tidings", prog_name="tidings")
@click.option(
    "--url",
    envvar=URL_VARIABLE,
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="The tidings server.",
)
@click.option(
    "--api-key", envvar=API_KEY_VARIABLE, show_envvar=True, help="Sent as a Bearer token."
)
@click.pass_context
def main(ctx: click.Context, url: str, api_key: str | None) -> None:
    """tidings: durable jobs with live progress.

    Exit status: 0 done, 1 the job (or a member of the batch) failed or was cancelled,
    2 bad usage, 3 the server refused the request, 4 the server could not be reached or is
    unavailable, 130 Ctrl-C.
    """
    session = Session(url, api_key or None)
    ctx.obj = session
    ctx.call_on_close(session.close)


for command in (*COMMANDS, *BATCH_COMMANDS, *OPERATOR_COMMANDS):
    main.add_command(command)
