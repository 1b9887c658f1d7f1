"""20,000 slowloris connections from one address, while another address uses the server.

Before the connection guard, ~21,000 such connections exhausted the server's file
descriptors and `/healthz` failed for as long as they were held. Now the flooding address
gets its per-address share and no more, each of those is cut off at the header deadline,
and a client on another address is served as if nothing were happening.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import asyncpg
import httpx
import pytest

from tests.chaos.conftest import Cluster
from tests.support.paths import REPO_ROOT
from tidings.core import keys

pytestmark = pytest.mark.chaos

CONNECTIONS = 20_000
HEADER_TIMEOUT_S = 5.0
# Measured from the client's side, a connection closed at the deadline may be reported
# a little later than it: scheduling on a machine this busy.
CLOSE_BOUND_S = HEADER_TIMEOUT_S + 2.0
PROBE_EVERY_S = 0.05
P99_BOUND_S = 0.100


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def probe(url: str, path: str, headers: dict[str, str], into: list[float]) -> None:
    """Time `GET path` on a new connection each time, until cancelled."""
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=no_reuse, timeout=10) as client:
        while True:
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            into.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            await asyncio.sleep(PROBE_EVERY_S)


async def test_a_slowloris_flood_from_one_address_does_not_reach_another(
    cluster: Cluster, db: asyncpg.Pool
) -> None:
    await cluster.server(auth="keys", header_timeout_s=HEADER_TIMEOUT_S)
    key = await keys.create_key(db, "probe", "chaos")
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.slowloris",
        "--port",
        str(cluster.settings.port),
        "--source",
        "127.0.0.2",
        "--connections",
        str(CONNECTIONS),
        "--give-up-s",
        str(HEADER_TIMEOUT_S * 4),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    health: list[float] = []
    listing: list[float] = []
    auth = {"Authorization": f"Bearer {key.secret}"}
    probes = [
        asyncio.create_task(probe(cluster.url, "/healthz", {}, health)),
        asyncio.create_task(probe(cluster.url, "/jobs?limit=1", auth, listing)),
    ]
    try:
        async with asyncio.timeout(300):
            output, _ = await flood.communicate()
    finally:
        for task in probes:
            task.cancel()
        results = await asyncio.gather(*probes, return_exceptions=True)
    for result in results:  # a failed probe (non-200, transport error) fails the test
        if not isinstance(result, asyncio.CancelledError):
            raise result  # type: ignore[misc]
    assert flood.returncode == 0
    report = json.loads(output)
    closed = report["closed_after_s"]
    within = sum(1 for seconds in closed if seconds <= CLOSE_BOUND_S)
    summary = {
        "connected": report["connected"],
        "refused_or_reset": report["connect_failed"],
        "closed_within_bound": within,
        "never_closed": report["never_closed"],
        "flood_s": round(report["elapsed_s"], 1),
        "healthz_p50_ms": round(statistics.median(health) * 1000, 1),
        "healthz_p99_ms": round(p99(health) * 1000, 1),
        "jobs_p50_ms": round(statistics.median(listing) * 1000, 1),
        "jobs_p99_ms": round(p99(listing) * 1000, 1),
        "probes": len(health) + len(listing),
    }
    print("slowloris:", json.dumps(summary))
    assert report["connected"] + report["connect_failed"] == CONNECTIONS
    assert within >= 0.99 * CONNECTIONS, summary
    assert p99(health) < P99_BOUND_S, summary
    assert p99(listing) < P99_BOUND_S, summary
