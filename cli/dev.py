"""`tidings dev`: one command that runs Postgres, Redis, the server and a worker locally."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from dataclasses import replace

import click

from tidings.core.db.migrate import migrate_url
from tidings.core.embedded import start_embedded
from tidings.core.settings import Settings

STOP_TIMEOUT_S = 15.0


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that points a child process at the same servers, auth off."""
    env = dict(os.environ)
    env["TIDINGS_DATABASE_URL"] = settings.database_url
    env["TIDINGS_REDIS_URL"] = settings.redis_url
    env["TIDINGS_AUTH"] = settings.auth
    env.setdefault("TIDINGS_SECRET", secrets.token_urlsafe(32))
    return env


async def _supervise(settings: Settings) -> int:
    env = child_env(settings)
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
        for module in ("tidings.server", "tidings.worker")
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = f"http://{settings.host}:{settings.port}"
    click.secho(f"\ntidings is starting at {url}  (Ctrl-C stops everything)", bold=True)
    click.echo("Try:")
    click.echo(
        f"  curl -s -X POST {url}/jobs -H 'Content-Type: application/json' \\\n"
        """    -d '{"task": "sleep_steps", "args": {"steps": 10, "delay_s": 0.5}}'"""
    )
    click.echo(f"  curl -N {url}/jobs/<id>/events\n")
    exits = [asyncio.create_task(child.wait()) for child in children]
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            codes = await asyncio.gather(*exits)
    except TimeoutError:
        for child in children:
            if child.returncode is None:
                child.kill()
        codes = await asyncio.gather(*exits)
    stopping.cancel()
    return 0 if stop.is_set() else max(abs(code) for code in codes)


def run_dev(settings: Settings) -> int:
    """Start what is missing, migrate, run server and worker until Ctrl-C (auth off)."""
    settings = replace(settings, auth="off")
    click.secho(
        "WARNING: development mode: TIDINGS_AUTH=off, every request acts as tenant "
        "'default'. Never expose this server beyond this machine.",
        fg="red",
        bold=True,
        err=True,
    )
    if settings.embedded:
        click.secho(f"Using embedded Postgres/Redis under {settings.data_dir}", fg="yellow")
    resolved, servers = start_embedded(settings)
    try:
        asyncio.run(migrate_url(resolved.database_url))
        return asyncio.run(_supervise(replace(resolved)))
    finally:
        servers.close()
