"""The `tidings` command."""

from __future__ import annotations

import asyncio

import click

from core.embedded import start_embedded
from core.migrate import migrate_url
from core.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def main() -> None:
    """tidings: durable jobs with live progress."""


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
    settings, servers = start_embedded(_settings())
    try:
        applied = asyncio.run(migrate_url(settings.database_url, settings.migrations_dir))
    finally:
        servers.close()
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo("database is up to date")
