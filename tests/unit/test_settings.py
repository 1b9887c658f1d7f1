"""Settings read from an injected environment mapping into typed values."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tidings.core.settings import DEFAULT_TASK_MODULES, Settings, SettingsError, settings_table


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.queues == ("default",)
    assert settings.tasks == DEFAULT_TASK_MODULES


def test_data_lives_in_the_working_directory_not_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).data_dir == tmp_path / ".data"


def test_only_prefixed_variables_are_read() -> None:
    assert Settings.from_env({"PORT": "9000", "tidings_port": "9001"}) == Settings()


def test_strings_are_taken_as_given() -> None:
    settings = Settings.from_env(
        {
            "TIDINGS_DATABASE_URL": "postgresql://db/tidings",
            "TIDINGS_REDIS_URL": "redis://cache/1",
            "TIDINGS_HOST": "0.0.0.0",
            "TIDINGS_LOG_FORMAT": "json",
            "TIDINGS_AUTH": "keys",
        }
    )
    assert settings.database_url == "postgresql://db/tidings"
    assert settings.redis_url == "redis://cache/1"
    assert settings.host == "0.0.0.0"
    assert settings.log_format == "json"
    assert settings.auth == "keys"


def test_ints_are_converted() -> None:
    settings = Settings.from_env(
        {"TIDINGS_PORT": "9000", "TIDINGS_CONCURRENCY": "8", "TIDINGS_MAX_BODY_BYTES": "2048"}
    )
    assert (settings.port, settings.concurrency, settings.max_body_bytes) == (9000, 8, 2048)
    assert isinstance(settings.port, int)


def test_floats_are_converted() -> None:
    settings = Settings.from_env({"TIDINGS_HEARTBEAT_S": "0.25", "TIDINGS_KEEPALIVE_S": "3"})
    assert settings.heartbeat_s == 0.25
    assert settings.keepalive_s == 3.0
    assert isinstance(settings.keepalive_s, float)


def test_tuples_are_read_from_comma_lists() -> None:
    settings = Settings.from_env(
        {"TIDINGS_QUEUES": " high, default ,,low ", "TIDINGS_TASKS": "app.tasks"}
    )
    assert settings.queues == ("high", "default", "low")
    assert settings.tasks == ("app.tasks",)


def test_paths_are_converted() -> None:
    settings = Settings.from_env({"TIDINGS_DATA_DIR": "/srv/tidings"})
    assert settings.data_dir == Path("/srv/tidings")
    assert isinstance(settings.data_dir, Path)


def test_empty_values_are_ignored() -> None:
    environ = {"TIDINGS_PORT": "", "TIDINGS_QUEUES": "", "TIDINGS_HOST": "", "TIDINGS_DATA_DIR": ""}
    assert Settings.from_env(environ) == Settings()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TIDINGS_PORT", "eighty"),
        ("TIDINGS_CONCURRENCY", "1.5"),
        ("TIDINGS_HEARTBEAT_S", "fast"),
        ("TIDINGS_DB_TIMEOUT_S", "5s"),
    ],
)
def test_unreadable_values_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}="):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("TIDINGS_QUEUES", " , "),
        ("TIDINGS_CONCURRENCY", "0"),
        ("TIDINGS_LOG_FORMAT", "xml"),
        ("TIDINGS_AUTH", "maybe"),
        ("TIDINGS_PORT", "0"),
        ("TIDINGS_PORT", "65536"),
        ("TIDINGS_TASK_LOG_LEVEL", "chatty"),
        ("TIDINGS_TASK_LOG_MAX", "0"),
    ],
)
def test_from_env_validates(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} "):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(
    "changes",
    [
        {"queues": ()},
        {"concurrency": -1},
        {"log_format": "pretty"},
        {"auth": "none"},
        {"port": -1},
    ],
)
def test_validate_rejects_values_no_process_could_run_with(changes: dict[str, object]) -> None:
    with pytest.raises(SettingsError):
        replace(Settings(), **changes).validate()  # type: ignore[arg-type]


def test_validate_accepts_the_boundaries() -> None:
    replace(Settings(), port=1, concurrency=1).validate()
    replace(Settings(), port=65535, log_format="console").validate()
    replace(Settings(), task_log_level="OFF", task_log_max=1).validate()
    assert Settings.from_env({"TIDINGS_TASK_LOG_LEVEL": "debug"}).task_log_level == "debug"


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("database_url", "redis_url", "embedded"),
    [
        ("", "", True),
        ("postgresql://db", "", True),
        ("", "redis://r", True),
        ("postgresql://db", "redis://r", False),
    ],
)
def test_embedded_unless_both_urls_are_given(
    database_url: str, redis_url: str, embedded: bool
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url)
    assert settings.embedded is embedded


def test_the_readme_lists_every_setting_with_its_real_default() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table: start -->\n") + len(
        "<!-- settings-table: start -->\n"
    )
    end = readme.index("<!-- settings-table: end -->")
    assert readme[start:end] == settings_table(), (
        "README's settings table is out of date: paste `python -m tidings.core.settings`"
    )
    for item in fields(Settings):
        assert f"`TIDINGS_{item.name.upper()}`" in readme[start:end]


def test_queue_names_and_the_operator_token_are_checked_at_start() -> None:
    with pytest.raises(SettingsError, match="is not a queue name"):
        Settings.from_env({"TIDINGS_QUEUES": "default,emails/high"})
    with pytest.raises(SettingsError, match="at least 16 characters"):
        Settings.from_env({"TIDINGS_OPERATOR_TOKEN": "changeme"})
    assert Settings.from_env({"TIDINGS_OPERATOR_TOKEN": "x" * 16}).operator_token == "x" * 16


def test_a_variable_no_longer_read_is_an_error_not_silently_ignored() -> None:
    with pytest.raises(SettingsError, match="TIDINGS_MIGRATIONS_DIR is no longer read"):
        Settings.from_env({"TIDINGS_MIGRATIONS_DIR": "sql"})
