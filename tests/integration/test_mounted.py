"""tidings mounted at /tidings in a host app: Starlette, FastAPI, and FastAPI with a
lifespan of its own (an SQLAlchemy engine) that runs tidings' inside it.

Each host is served by a real uvicorn, with keys on, and read with httpx as a user's
client and browser would: every link the API hands out, the SSE streams it names, the
dashboard's pages and assets, and the host's own route beside the mount. A mount whose
lifespan the host never runs answers 503 `not_started`, and the standalone server still
hands out links without a prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tests.integration.test_observability import samples
from tests.support.servers import ServerHandle, WorkerHandle, serve
from tests.support.sse import job_events
from tidings.core import keys
from tidings.core.settings import Settings
from tidings.server import create_app

PREFIX = "/tidings"
SECRET = "mounted-test-secret-" + "s" * 32
OPERATOR_TOKEN = "operator-token-for-mounted-tests"
WITHIN_S = 10.0
# No worker consumes this queue: jobs sent there stay queued.
PARKED = "parked"


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """Keys on, so that the auth's path checks (public pages, stream tokens) are exercised."""
    return replace(settings, auth="keys", secret=SECRET, operator_token=OPERATOR_TOKEN)


@pytest.fixture(scope="module")
async def key(pool: asyncpg.Pool) -> keys.NewKey:
    return await keys.create_key(pool, "acme", "mounted")


def bearer(key: keys.NewKey) -> dict[str, str]:
    return {"authorization": f"Bearer {key.secret}"}


# --- the host apps ----------------------------------------------------------------------------


def starlette_host(settings: Settings) -> Starlette:
    """Starlette with tidings' lifespan as its own."""
    tidings_app = create_app(settings)

    async def hello(request: Request) -> Response:
        return JSONResponse({"host": "starlette"})

    return Starlette(
        routes=[Route("/hello", hello), Mount(PREFIX, app=tidings_app)],
        lifespan=tidings_app.lifespan,
    )


def fastapi_host(settings: Settings) -> FastAPI:
    """FastAPI with tidings' lifespan as its own, as the README shows it."""
    tidings_app = create_app(settings)
    app = FastAPI(lifespan=tidings_app.lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"host": "fastapi"}

    app.mount(PREFIX, tidings_app)
    return app


def fastapi_host_with_own_lifespan(settings: Settings) -> FastAPI:
    """FastAPI whose own lifespan opens an SQLAlchemy engine and runs tidings' inside it."""
    tidings_app = create_app(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = make_url(settings.database_url).set(drivername="postgresql+asyncpg")
        app.state.engine = create_async_engine(url)
        try:
            async with tidings_app.lifespan(app):
                yield
        finally:
            await app.state.engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, Any]:
        async with app.state.engine.connect() as conn:
            jobs = await conn.scalar(text("SELECT count(*) FROM jobs"))
        return {"host": "fastapi-own-lifespan", "jobs": jobs}

    app.mount(PREFIX, tidings_app)
    return app


HOSTS: dict[str, Callable[[Settings], Any]] = {
    "starlette": starlette_host,
    "fastapi": fastapi_host,
    "fastapi-own-lifespan": fastapi_host_with_own_lifespan,
}


@dataclass
class Host:
    name: str
    url: str  # the host's root
    client: httpx.AsyncClient  # on the host's root, with the API key

    @property
    def tidings(self) -> str:
        """The mounted app's URL."""
        return self.url + PREFIX


@pytest.fixture(scope="module", params=list(HOSTS))
async def host(
    request: pytest.FixtureRequest, settings: Settings, worker: WorkerHandle, key: keys.NewKey
) -> AsyncIterator[Host]:
    name: str = request.param
    async with (
        serve(HOSTS[name](settings)) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(key), timeout=WITHIN_S) as client,
    ):
        yield Host(name, url, client)


async def submit(client: httpx.AsyncClient, path: str, **body: Any) -> httpx.Response:
    response = await client.post(path, json=body)
    assert response.status_code == 202, response.text
    return response


# --- the API under the mount ------------------------------------------------------------------


async def test_a_submission_answers_with_links_under_the_mount(host: Host) -> None:
    response = await submit(host.client, f"{PREFIX}/jobs", task="noop", queue=PARKED)
    job = response.json()
    own = f"{host.tidings}/jobs/{job['id']}"
    assert response.headers["location"] == own
    assert job["links"]["self"] == own
    assert job["links"]["events"].startswith(f"{own}/events?token=")
    assert (await host.client.get(job["links"]["self"])).json()["id"] == job["id"]


async def test_a_jobs_events_link_streams_it_to_the_end_with_its_token_alone(host: Host) -> None:
    response = await submit(
        host.client, f"{PREFIX}/jobs", task="sleep_steps", args={"steps": 3, "delay_s": 0.02}
    )
    events_url = response.json()["links"]["events"]
    # As a browser's EventSource: no Authorization header, only the link's token.
    async with (
        httpx.AsyncClient(timeout=WITHIN_S) as browser,
        asyncio.timeout(WITHIN_S),
        aconnect_sse(browser, "GET", events_url) as source,
    ):
        assert source.response.status_code == 200
        kinds = [kind async for _, kind, _ in job_events(source)]
    assert kinds == ["queued", "started", "progress", "progress", "progress", "succeeded"]


async def test_the_tenants_events_stream_under_the_mount(host: Host) -> None:
    listing = await host.client.get(f"{PREFIX}/jobs", params={"limit": "1"})
    assert listing.status_code == 200
    events_url = listing.json()["events"]
    assert events_url.startswith(f"{host.tidings}/events?token=")
    async with (
        httpx.AsyncClient(timeout=WITHIN_S) as browser,
        asyncio.timeout(WITHIN_S),
        aconnect_sse(browser, "GET", events_url) as source,
    ):
        assert source.response.status_code == 200
        job_id = (await submit(host.client, f"{PREFIX}/jobs", task="noop", queue=PARKED)).json()[
            "id"
        ]
        async for sse in source.aiter_sse():
            if sse.data and sse.json().get("job_id") == job_id:
                assert sse.event == "queued"
                break


async def test_the_stream_paths_need_credentials_under_the_mount(host: Host) -> None:
    async with httpx.AsyncClient(base_url=host.url, timeout=WITHIN_S) as anonymous:
        for path in (f"{PREFIX}/events", f"{PREFIX}/jobs", f"{PREFIX}/workers"):
            response = await anonymous.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"


# --- pages, health, docs, metrics -------------------------------------------------------------


async def test_the_dashboard_pages_point_at_the_mount(host: Host) -> None:
    job = (await submit(host.client, f"{PREFIX}/jobs", task="noop", queue=PARKED)).json()
    async with httpx.AsyncClient(base_url=host.url, timeout=WITHIN_S) as anonymous:
        for path in (f"{PREFIX}/", f"{PREFIX}/ui/jobs/{job['id']}", f"{PREFIX}/ui/queues"):
            page = await anonymous.get(path)  # the pages are public: they hold no data
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert f'data-root="{PREFIX}"' in page.text
            assert f'src="{PREFIX}/static/dashboard.js?v=' in page.text
            assert f'href="{PREFIX}/static/dashboard.css?v=' in page.text
            assert f'href="{PREFIX}/ui/queues"' in page.text
        script = await anonymous.get(f"{PREFIX}/static/dashboard.js")
        assert script.status_code == 200
        assert "document.body.dataset.root" in script.text


async def test_health_docs_and_metrics_answer_under_the_mount(host: Host) -> None:
    async with httpx.AsyncClient(base_url=host.url, timeout=WITHIN_S) as anonymous:
        assert (await anonymous.get(f"{PREFIX}/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get(f"{PREFIX}/readyz")).json()["status"] == "ready"
        docs = await anonymous.get(f"{PREFIX}/docs")
        assert docs.status_code == 200
        assert f'src="{PREFIX}/docs/assets/swagger-ui-bundle.js"' in docs.text
        document = (await anonymous.get(f"{PREFIX}/openapi.json")).json()
        assert document["servers"] == [{"url": PREFIX}]
        assert (await anonymous.get(f"{PREFIX}/events")).status_code == 401
        assert (await host.client.get(f"{PREFIX}/no-such-page")).status_code == 404
        metrics = await anonymous.get(
            f"{PREFIX}/metrics", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
    assert metrics.status_code == 200
    routes = {
        dict(labels)["route"]
        for (name, labels) in samples(metrics.text)
        if name == "tidings_http_requests_total"
    }
    # Labelled by tidings' own routes, never by the host's mount.
    assert {"/healthz", "/jobs", "/events", "unmatched"} <= routes
    assert PREFIX not in routes


async def test_the_hosts_own_route_still_answers(host: Host) -> None:
    response = await host.client.get("/hello")
    assert response.status_code == 200
    assert response.json()["host"] == host.name


# --- a mount the host never started, and the standalone server --------------------------------


async def test_a_mount_without_its_lifespan_is_a_503_that_says_what_to_add(
    settings: Settings,
) -> None:
    forgot = Starlette(routes=[Mount(PREFIX, app=create_app(settings))])
    async with serve(forgot) as url, httpx.AsyncClient(base_url=url, timeout=WITHIN_S) as client:
        for method, path in [
            ("GET", f"{PREFIX}/"),
            ("GET", f"{PREFIX}/healthz"),
            ("POST", f"{PREFIX}/jobs"),
            ("GET", f"{PREFIX}/events"),
            ("GET", f"{PREFIX}/jobs/00000000-0000-4000-8000-000000000000/events"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 503, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "not_started"
            assert "lifespan=tidings_app.lifespan" in error["message"]


async def test_the_standalone_server_hands_out_links_without_a_prefix(
    server: ServerHandle, worker: WorkerHandle, key: keys.NewKey
) -> None:
    async with httpx.AsyncClient(
        base_url=server.url, headers=bearer(key), timeout=WITHIN_S
    ) as client:
        response = await submit(client, "/jobs", task="noop", queue=PARKED)
        job = response.json()
        own = f"{server.url}/jobs/{job['id']}"
        assert response.headers["location"] == job["links"]["self"] == own
        assert job["links"]["events"].startswith(f"{own}/events?token=")
        listing = (await client.get("/jobs", params={"limit": "1"})).json()
        assert listing["events"].startswith(f"{server.url}/events?token=")
        assert "servers" not in (await client.get("/openapi.json")).json()
        page = await client.get("/")
        assert 'data-root=""' in page.text and 'src="/static/dashboard.js?v=' in page.text


# --- a mount with no URLs set -----------------------------------------------------------------


async def test_a_mount_with_no_urls_runs_embedded_servers_for_its_lifespan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("TIDINGS_DATABASE_URL", "TIDINGS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path))
    runtime = tmp_path / "runtime"  # pgserver's, private; else it makes one for good
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    tidings_app = create_app()  # the settings from the environment, as a user's app would
    host = Starlette(routes=[Mount(PREFIX, app=tidings_app)], lifespan=tidings_app.lifespan)
    async with serve(host) as url, httpx.AsyncClient(base_url=url, timeout=WITHIN_S) as client:
        ready = await client.get(f"{PREFIX}/readyz")
        assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}
        assert (tmp_path / "postgres" / "postmaster.pid").exists()
    # The lifespan let its embedded servers go: Postgres stopped.
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
