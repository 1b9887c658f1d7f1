"""The OpenAPI document is a contract: schemathesis fuzzes a live server against it.

A real `python -m server` (auth on, a fresh API key, no rate limit so the fuzzer is never
throttled) and a real worker (so submitted jobs run, fail, get cancelled and retried, and
the stateful phase follows the document's links through real states). The run must end
with no server error and no response whose status, content type, headers or body the
document does not declare, and must reject every request the document calls invalid.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.support.servers import Process, free_port, spawn
from tidings.core import keys
from tidings.core.settings import Settings

# Per operation and phase: enough to cover every operation's parameters and bodies, few
# enough that the whole test stays within two minutes on a 2-core machine.
MAX_EXAMPLES = 10
SEED = 20_261_126
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
        # Not positive_data_acceptance: the schema cannot say which cursors, run_at strings
        # or task args are semantically valid, so a schema-valid request may rightly be 422.
    ]
)
# /events is a live feed that never ends (it has no terminal event), so every request to
# it would only run into the request timeout; /metrics is Prometheus exposition text, which
# a JSON Schema cannot describe (test_observability parses it instead).
EXCLUDED_PATHS = ("/events", "/metrics")
# A 10,000-job batch (the schema's maxItems) takes seconds on this machine.
REQUEST_TIMEOUT_S = 30
# The SSE form of a job's events follows the job to its terminal event, and many jobs the
# fuzzer makes never get there (a run_at next year, a queue no worker reads): schemathesis
# reads such a stream until the request timeout, so a short one for this operation keeps
# those cheap. What arrived in that time is still checked, event by event. A batch's
# stream follows it to `batch.finished` in the same way.
CONFIG = """
[[operations]]
include-operation-id = "getJobEvents"
request-timeout = 5

[[operations]]
include-operation-id = "getBatchEvents"
request-timeout = 5
"""
REPORT_TAIL_LINES = 80


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        auth="keys",
        secret="fuzz-secret-" + "f" * 32,
        rate_limit_per_s=0,
        port=free_port(),
        log_level="info",
    )


@pytest.fixture(scope="module")
async def api_key(pool: asyncpg.Pool) -> str:
    return (await keys.create_key(pool, "fuzz", "schemathesis")).secret


@dataclass
class Live:
    url: str
    server: Process
    worker: Process


@pytest.fixture(scope="module")
async def live(settings: Settings, api_key: str) -> AsyncIterator[Live]:
    server = await spawn("tidings.server", settings)
    worker = await spawn("tidings.worker", settings)
    try:
        await server.wait_for_line("server.ready")
        # The registry fills at worker start; the document's task enum is read from it.
        await worker.wait_for_line("worker.ready")
        yield Live(f"http://127.0.0.1:{settings.port}", server, worker)
    finally:
        await worker.stop()
        await server.stop()


def tail(text: str, lines: int = REPORT_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


async def run_schemathesis(url: str, api_key: str, workdir: Path) -> tuple[int, str]:
    """Exit status and output of one `st run` against the live server."""
    report = workdir / "schemathesis.txt"
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("st")),
        *("--config-file", str(config)),
        "run",
        f"{url}/openapi.json",
        *("--header", f"Authorization: Bearer {api_key}"),
        *("--checks", CHECKS),
        *("--phases", "examples,coverage,fuzzing,stateful"),
        *("--max-examples", str(MAX_EXAMPLES)),
        *("--seed", str(SEED)),
        *("--request-timeout", str(REQUEST_TIMEOUT_S)),
        *(argument for path in EXCLUDED_PATHS for argument in ("--exclude-path", path)),
        *("--generation-database", "none"),
        "--no-color",
    ]
    # The output can run to megabytes: it goes to a file, and only its tail is shown.
    with report.open("wb") as output:
        # cwd: schemathesis and hypothesis write their caches to the working directory.
        process = await asyncio.create_subprocess_exec(
            *command, cwd=workdir, stdout=output, stderr=asyncio.subprocess.STDOUT
        )
        code = await process.wait()
    return code, report.read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live: Live, api_key: str, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        document = (await client.get("/openapi.json")).json()
    assert document["components"]["schemas"]["SubmitRequest"]["properties"]["task"]["enum"]

    code, report = await run_schemathesis(live.url, api_key, tmp_path)
    assert code == 0, f"schemathesis exited with {code}; the report ends:\n{tail(report)}"
    assert api_key not in report  # schemathesis masks the Authorization header

    # The real process, with its production logging: a stream token in a URL (the way
    # browsers send it) and the key in a header must not reach its logs.
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        auth = {"authorization": f"Bearer {api_key}"}
        job = (await client.post("/jobs", json={"task": "noop"}, headers=auth)).json()
        link = job["links"]["events"]
        history = await client.get(link, headers={"accept": "application/json"})
        assert history.status_code == 200, history.text
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert (await live.worker.stop(), await live.server.stop()) == (0, 0)
    logs = live.server.output + live.worker.output
    assert "request.crashed" not in logs and "Traceback" not in live.server.output, tail(logs)
    assert api_key not in logs
    assert token not in logs
