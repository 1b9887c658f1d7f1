"""Fixtures of the cluster suite: PgBouncer, Sentinel-watched Redis, several servers and workers.

Every test gets a fresh database in the test Postgres, reached by its processes through a
PgBouncer of its own in transaction pooling mode, and a Redis primary + replica + three
sentinels of its own, reached through a `redis+sentinel://` URL. Server and worker
processes (`python -m tidings.server|worker`) are started by the test, each server on
its own port. The suite needs Debian's `pgbouncer`, `redis-server` and `redis-sentinel`
(`.ci/run` installs them) and skips, saying so, on a machine without them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.chaos.conftest import Cluster
from tests.cluster.engines import PgBouncer, SentinelRedis, missing_binaries
from tests.cluster.report import ScenarioRow, table
from tests.conftest import with_database
from tests.support.paths import REPO_ROOT
from tidings.core.settings import Settings

RESULTS = REPO_ROOT / ".data" / "cluster" / "results.json"
_ROWS = pytest.StashKey[list[ScenarioRow]]()


@pytest.fixture(autouse=True)
def _engines_installed() -> None:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"the cluster suite needs {', '.join(missing)} (apt-get install them)")


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def direct_database_url(backing: Settings, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own, reached directly."""
    name = f"tidings_cluster_{uuid.uuid4().hex[:10]}"
    await _admin(backing.database_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield with_database(backing.database_url, name)
    await _admin(backing.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pgbouncer(tmp_path: Path, backing: Settings) -> AsyncIterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the test Postgres."""
    bouncer = PgBouncer(tmp_path / "pgbouncer", backing.database_url)
    await bouncer.start()
    yield bouncer
    await bouncer.close()


@pytest.fixture
async def sentinel_redis(tmp_path: Path) -> AsyncIterator[SentinelRedis]:
    """A Redis primary and replica with three sentinels, all of this test's own."""
    group = SentinelRedis(tmp_path / "redis")
    try:
        await group.start()
        yield group
    finally:
        await group.close()


@pytest.fixture
def cluster_settings(
    backing: Settings,
    direct_database_url: str,
    pgbouncer: PgBouncer,
    sentinel_redis: SentinelRedis,
) -> Settings:
    """What every process of the test reads: Postgres through PgBouncer, Redis through
    Sentinel, and the direct URL only for each worker's LISTEN connection."""
    return replace(
        backing,
        database_url=pgbouncer.url(direct_database_url),
        database_direct_url=direct_database_url,
        redis_url=sentinel_redis.url,
        namespace=f"k{uuid.uuid4().hex[:10]}",
        log_format="json",
        log_level="info",
        reconcile_s=1.0,
        keepalive_s=1.0,
        # A worker is taken for lost after 10 s of heartbeat silence, not the default 4 s:
        # on two cores shared with other work, a busy worker's beats were seen 4 s apart,
        # and its jobs were re-run (recovery itself is the chaos suite's subject).
        reap_after_s=10.0,
        concurrency=50,
        max_connections_per_address=0,
    )


@pytest.fixture
async def db(direct_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The test's own pool on its database, direct, for checking what the processes wrote."""
    from tidings.core.db.pool import create_pool

    pool = await create_pool(direct_database_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def processes(cluster_settings: Settings) -> AsyncIterator[Cluster]:
    """Starts servers and workers configured by `cluster_settings`; stops what is left."""
    cluster = Cluster(cluster_settings)
    yield cluster
    await cluster.close()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Any:
    """Keeps a scenario's measured row for the table printed at the end of the run."""
    rows = request.config.stash.setdefault(_ROWS, [])
    return rows.append


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("-", "cluster scenarios")
    terminalreporter.write_line(table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([row.as_dict() for row in rows], indent=2) + "\n")
    terminalreporter.write_line(f"(saved to {RESULTS.relative_to(REPO_ROOT)})")
