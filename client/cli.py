"""The `tidings` command."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from client import errors, exits
from client.commands import COMMANDS, Session, fail
from client.config import API_KEY_VARIABLE, DEFAULT_URL, URL_VARIABLE
from client.keys import keys_group
from core.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


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

    Exit status: 0 done, 1 the job failed or was cancelled, 2 bad usage, 3 the server
    refused the request, 4 the server could not be reached or is unavailable, 130 Ctrl-C.
    """
    session = Session(url, api_key or None)
    ctx.obj = session
    ctx.call_on_close(session.close)


for command in COMMANDS:
    main.add_command(command)
main.add_command(keys_group)


@main.command()
def dev() -> None:
    """Run Postgres and Redis (embedded unless URLs are set), the server and one worker."""
    from client.dev import run_dev

    raise SystemExit(run_dev(_settings()))


@main.command()
def server() -> None:
    """Run the HTTP server."""
    from server.app import main as server_main

    server_main()


@main.command()
def worker() -> None:
    """Run a worker that consumes the configured queues."""
    from worker.app import main as worker_main

    worker_main()


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    # Imported here: the client commands should not pay for the database driver.
    from core.embedded import start_embedded
    from core.migrate import migrate_url

    settings, servers = start_embedded(_settings())
    try:
        applied = asyncio.run(migrate_url(settings.database_url, settings.migrations_dir))
    finally:
        servers.close()
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo("database is up to date")


if __name__ == "__main__":
    main(prog_name="tidings")
