"""Typed settings, read once from an injectable environment mapping."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PREFIX = "TIDINGS_"
DEFAULT_TASK_MODULES = ("tidings.worker.tasks.examples", "tidings.worker.tasks.documents")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# A queue name: short, and of characters safe in a Redis key and a metrics label.
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
QUEUE_RULE = "1 to 64 of A-Z a-z 0-9 _ . : -"
MIN_OPERATOR_TOKEN = 16
# What TIDINGS_TASK_LOG_LEVEL may be: a logging level's name, or `off`.
TASK_LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "off")
DAY_S = 86_400.0
# Variables earlier releases read: set, they are an error rather than silently ignored.
REMOVED = {"TIDINGS_MIGRATIONS_DIR": "migrations ship inside the package now"}


class SettingsError(ValueError):
    """An environment value that cannot be read as its setting's type."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def setting(default: Any, doc: str) -> Any:
    """A settings field with its one-line description (the README's table is made from it)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """Everything a server or worker process is configured by."""

    database_url: str = setting("", "Postgres URL (asyncpg); empty: an embedded Postgres")
    database_direct_url: str = setting(
        "",
        "Postgres URL past any transaction pooler, for each worker's one LISTEN connection "
        "(empty: `DATABASE_URL`; behind PgBouncer without it, see docs/scaling.md)",
    )
    redis_url: str = setting(
        "",
        "`redis://host:port/db`, `unix:///path.sock` or `redis+sentinel://…`; "
        "empty: an embedded Redis",
    )
    host: str = setting("127.0.0.1", "address the server binds to")
    port: int = setting(8000, "port the server listens on")
    queues: tuple[str, ...] = setting(("default",), "queues a worker consumes (comma separated)")
    concurrency: int = setting(50, "jobs a worker runs at once, per queue")
    tasks: tuple[str, ...] = setting(
        DEFAULT_TASK_MODULES, "modules a worker imports tasks from (comma separated)"
    )
    namespace: str = setting("tidings", "prefix of every Redis key and channel")
    log_format: str = setting("auto", "`json`, `console`, or `auto` (console on a terminal)")
    log_level: str = setting("info", "`debug`, `info`, `warning` or `error`")
    task_log_level: str = setting(
        "info",
        "lowest level of a task's own `logging`/structlog lines kept as `log` events of its "
        "job (`off`: none)",
    )
    task_log_max: int = setting(
        1000, "captured log lines kept per job attempt; the rest are counted in one last note"
    )
    auth: str = setting("keys", "`keys` (API keys per tenant) or `off` (loopback hosts only)")
    operator_token: str = setting(
        "", "bearer token (16+ characters) for `/metrics` and the full `/workers`"
    )
    secret: str = setting(
        "", "key that signs stream tokens; set the same on every server (empty: random)"
    )
    stream_token_ttl_s: float = setting(900.0, "lifetime of a stream token")
    max_args_bytes: int = setting(256 * 1024, "largest args of one job, as JSON (422 beyond)")
    max_streams: int = setting(20_000, "open SSE streams per server process (503 beyond)")
    max_streams_per_tenant: int = setting(1_000, "open SSE streams per tenant (429 beyond)")
    max_connections: int = setting(
        0, "open client connections per server process, 503 beyond (0: the fd limit - 512)"
    )
    max_connections_per_address: int = setting(
        1_000, "open connections per client address, 429 beyond (0: no cap; behind a proxy)"
    )
    header_timeout_s: float = setting(
        10.0, "time a connection has to send a request's complete headers (408 beyond)"
    )
    idle_timeout_s: int = setting(5, "time an idle keep-alive connection stays open")
    rate_limit_per_s: float = setting(100.0, "requests per second per API key (token bucket)")
    rate_limit_burst: int = setting(200, "burst of requests per API key")
    data_dir: Path = field(
        default_factory=lambda: Path.cwd() / ".data",
        metadata={"doc": "where embedded servers keep their files (`./.data`)"},
    )
    max_body_bytes: int = setting(1024 * 1024, "request body limit (413 beyond)")
    max_batch_bytes: int = setting(16 * 1024 * 1024, "`POST /jobs/batch` body limit")
    heartbeat_s: float = setting(1.0, "worker heartbeat period")
    poll_delay_s: float = setting(
        1.0, "longest a worker waits for a wake-up before it looks at its queue anyway"
    )
    keepalive_s: float = setting(15.0, "SSE keep-alive comment period")
    stream_queue_size: int = setting(
        256, "events buffered per SSE stream before it catches up from Postgres"
    )
    db_timeout_s: float = setting(5.0, "how long a new database connection may take")
    drain_timeout_s: float = setting(10.0, "how long a stopping worker lets running jobs finish")
    reap_after_s: float = setting(
        4.0, "heartbeat silence after which a worker's running jobs are re-queued"
    )
    reconcile_s: float = setting(10.0, "how often waiting jobs are checked against Redis")
    retain_succeeded_s: float = setting(
        7 * DAY_S, "how long a succeeded job and its events are kept (a task's `retain_s` wins)"
    )
    retain_failed_s: float = setting(30 * DAY_S, "how long a failed job and its events are kept")
    retain_cancelled_s: float = setting(
        30 * DAY_S, "how long a cancelled job and its events are kept"
    )
    prune_period_s: float = setting(
        60.0, "how often a worker deletes the finished jobs past their retention"
    )
    prune_batch_jobs: int = setting(500, "most jobs one pruning transaction deletes")
    prune_batch_events: int = setting(
        10_000, "most events one pruning transaction deletes (a job with more goes alone)"
    )
    worker_metrics_port: int = setting(0, "port a worker serves `/metrics` on (0: off)")
    alert_webhook: str = setting("", "URL the server POSTs failure-ratio alerts to (empty: off)")
    alert_failure_ratio: float = setting(0.5, "failure ratio of a task that raises an alert")
    alert_min_jobs: int = setting(10, "ended jobs of a task in the window before it can alert")
    alert_window_s: float = setting(300.0, "window the failure ratio is computed over")
    alert_cooldown_s: float = setting(900.0, "least time between two alerts for one task")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `TIDINGS_*` values from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        for name, why in REMOVED.items():
            if env.get(name):
                raise SettingsError(f"{name} is no longer read: {why}; unset it")
        defaults = cls()
        values: dict[str, object] = {}
        for name, default in defaults.__dict__.items():
            raw = env.get(PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            values[name] = _convert(name, raw, default)
        settings = replace(defaults, **values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values no process could run with."""
        if not self.queues:
            raise SettingsError("TIDINGS_QUEUES must name at least one queue")
        for queue in self.queues:
            if not re.match(QUEUE_PATTERN, queue):
                raise SettingsError(f"TIDINGS_QUEUES: {queue!r} is not a queue name ({QUEUE_RULE})")
        if self.operator_token and len(self.operator_token) < MIN_OPERATOR_TOKEN:
            raise SettingsError(
                f"TIDINGS_OPERATOR_TOKEN must be at least {MIN_OPERATOR_TOKEN} characters"
            )
        if self.concurrency < 1:
            raise SettingsError("TIDINGS_CONCURRENCY must be at least 1")
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError("TIDINGS_LOG_FORMAT must be auto, json or console")
        if self.task_log_level.lower() not in TASK_LOG_LEVELS:
            raise SettingsError(
                f"TIDINGS_TASK_LOG_LEVEL must be one of {', '.join(TASK_LOG_LEVELS)}"
            )
        if self.task_log_max < 1:
            raise SettingsError(
                "TIDINGS_TASK_LOG_MAX must be at least 1 (TIDINGS_TASK_LOG_LEVEL=off keeps none)"
            )
        if self.auth not in ("off", "keys"):
            raise SettingsError("TIDINGS_AUTH must be off or keys")
        if self.auth == "off" and self.host not in LOOPBACK_HOSTS:
            raise SettingsError(
                "TIDINGS_AUTH=off is only allowed when TIDINGS_HOST is a loopback address"
            )
        if not 0 < self.port < 65536:
            raise SettingsError("TIDINGS_PORT must be a TCP port")
        if not self.tasks:
            raise SettingsError("TIDINGS_TASKS must name at least one module")
        for name in (
            "heartbeat_s",
            "poll_delay_s",
            "keepalive_s",
            "db_timeout_s",
            "reap_after_s",
            "reconcile_s",
            "header_timeout_s",
            "idle_timeout_s",
            "retain_succeeded_s",
            "retain_failed_s",
            "retain_cancelled_s",
            "prune_period_s",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")
        if self.max_connections < 0 or self.max_connections_per_address < 0:
            raise SettingsError(
                "TIDINGS_MAX_CONNECTIONS and MAX_CONNECTIONS_PER_ADDRESS must be 0 or more"
            )
        if self.prune_batch_jobs < 1 or self.prune_batch_events < 1:
            raise SettingsError("TIDINGS_PRUNE_BATCH_JOBS and PRUNE_BATCH_EVENTS must be positive")
        if self.drain_timeout_s < 0 or self.max_body_bytes < 1 or self.stream_queue_size < 1:
            raise SettingsError(
                "TIDINGS_DRAIN_TIMEOUT_S, MAX_BODY_BYTES and STREAM_QUEUE_SIZE must be positive"
            )

    @property
    def listen_database_url(self) -> str:
        """Where a worker LISTENs: a session of its own, past any transaction pooler."""
        return self.database_direct_url or self.database_url

    @property
    def embedded(self) -> bool:
        """True when no server URL is given and the embedded Postgres/Redis are used."""
        return not (self.database_url and self.redis_url)


def settings_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """A process's settings; a value it cannot run with is one line on stderr, exit 2."""
    try:
        return Settings.from_env(environ)
    except SettingsError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return _split(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r}: {exc}") from None
    return raw


def settings_table() -> str:
    """The Markdown table of every setting: variable, default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    defaults = Settings()
    for item in fields(Settings):
        value = getattr(defaults, item.name)
        if item.name == "data_dir":
            shown = "`.data`"
        elif isinstance(value, tuple):
            shown = f"`{','.join(value)}`"
        elif value == "":
            shown = "(empty)"
        else:
            shown = f"`{_number(value)}`" if isinstance(value, float) else f"`{value}`"
        rows.append(f"| `{PREFIX}{item.name.upper()}` | {shown} | {item.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def _number(value: float) -> str:
    """A float as the table shows it: whole numbers in full (`2592000`, not `2.592e+06`)."""
    return str(int(value)) if value.is_integer() else f"{value:g}"


if __name__ == "__main__":
    print(settings_table(), end="")
