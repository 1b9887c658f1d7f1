"""`python -m examples.fastapi_app`: the example app and a worker in one process.

Postgres and Redis are embedded unless `TIDINGS_DATABASE_URL` / `TIDINGS_REDIS_URL` are
set. Auth is off (loopback only) unless `TIDINGS_AUTH` says otherwise: the progress page
opens the job's stream without a key.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import uvicorn

from examples.fastapi_app.app import build_app
from tidings.core.embedded import start_embedded
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings, settings_or_exit
from tidings.server.app import GracefulServer
from tidings.worker.app import run_worker

TASKS = "examples.fastapi_app.tasks"


def example_settings() -> Settings:
    """The settings from the environment, with auth off by default and the example's tasks."""
    settings = settings_or_exit({"TIDINGS_AUTH": "off", **os.environ})
    return replace(settings, tasks=(*settings.tasks, TASKS))


async def serve(settings: Settings) -> None:
    """The app on `settings.host:port` and one worker, until SIGINT or SIGTERM."""
    app = build_app(settings, settings.data_dir / "uploads")
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, ready))
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False
    )
    try:
        started = asyncio.create_task(ready.wait())
        await asyncio.wait([worker, started], return_when=asyncio.FIRST_COMPLETED)
        if worker.done():  # it could not start: say why
            started.cancel()
            worker.result()
        await GracefulServer(config).serve()
    finally:
        stop.set()
        await worker


def main() -> None:
    settings = example_settings()
    configure_logging(settings)
    settings, embedded = start_embedded(settings)
    # The worker's hooks read the application's database URL from the environment.
    os.environ["TIDINGS_DATABASE_URL"] = settings.database_url
    try:
        asyncio.run(serve(settings))
    finally:
        embedded.close()


if __name__ == "__main__":
    main()
