"""Typed settings, read once from an injectable environment mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PREFIX = "TIDINGS_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASK_MODULES = ("worker.tasks.examples",)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class SettingsError(ValueError):
    """An environment value that cannot be read as its setting's type."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything a server or worker process is configured by."""

    database_url: str = ""
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 50
    tasks: tuple[str, ...] = DEFAULT_TASK_MODULES
    namespace: str = "tidings"
    log_format: str = "auto"
    log_level: str = "info"
    auth: str = "keys"
    secret: str = ""
    stream_token_ttl_s: float = 900.0
    max_args_bytes: int = 256 * 1024
    max_streams: int = 20_000
    max_streams_per_tenant: int = 1_000
    rate_limit_per_s: float = 100.0
    rate_limit_burst: int = 200
    data_dir: Path = field(default=PROJECT_ROOT / ".data")
    migrations_dir: Path = field(default=PROJECT_ROOT / "migrations")
    max_body_bytes: int = 1024 * 1024
    max_batch_bytes: int = 16 * 1024 * 1024
    heartbeat_s: float = 2.0
    poll_delay_s: float = 1.0
    keepalive_s: float = 15.0
    stream_queue_size: int = 256
    db_timeout_s: float = 5.0
    drain_timeout_s: float = 10.0
    reap_after_s: float = 10.0
    reconcile_s: float = 10.0
    worker_metrics_port: int = 0
    alert_webhook: str = ""
    alert_failure_ratio: float = 0.5
    alert_min_jobs: int = 10
    alert_window_s: float = 300.0
    alert_cooldown_s: float = 900.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `TIDINGS_*` values from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
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
        if self.concurrency < 1:
            raise SettingsError("TIDINGS_CONCURRENCY must be at least 1")
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError("TIDINGS_LOG_FORMAT must be auto, json or console")
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
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")
        if self.drain_timeout_s < 0 or self.max_body_bytes < 1 or self.stream_queue_size < 1:
            raise SettingsError(
                "TIDINGS_DRAIN_TIMEOUT_S, MAX_BODY_BYTES and STREAM_QUEUE_SIZE must be positive"
            )

    @property
    def embedded(self) -> bool:
        """True when no server URL is given and the embedded Postgres/Redis are used."""
        return not (self.database_url and self.redis_url)


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
