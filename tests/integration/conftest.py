"""A server and a worker that also run the tasks of `tests/support/family_tasks.py` (which
spawn, wait for and depend on other jobs), shared by the batch and dependency tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from tests.support.servers import ServerHandle, WorkerHandle, start_server, start_worker
from tidings.core.settings import Settings

FAMILY_TASKS = (
    "tidings.worker.tasks.examples",
    "tidings.worker.tasks.documents",
    "tests.support.family_tasks",
)


@pytest.fixture(scope="module")
def family_settings(settings: Settings) -> Settings:
    return replace(settings, tasks=FAMILY_TASKS)


@pytest.fixture(scope="module")
async def family_server(family_settings: Settings) -> AsyncIterator[ServerHandle]:
    async with start_server(family_settings) as handle:
        yield handle


@pytest.fixture(scope="module")
async def family_worker(
    family_settings: Settings, family_server: ServerHandle
) -> AsyncIterator[WorkerHandle]:
    async with start_worker(family_settings) as handle:
        yield handle


@pytest.fixture
async def family_client(
    family_server: ServerHandle, family_worker: WorkerHandle
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the family server, with its worker running."""
    async with httpx.AsyncClient(base_url=family_server.url, timeout=30) as http:
        yield http
