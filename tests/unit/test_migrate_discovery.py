"""Finding migration files: version order, strict names, one file per version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tidings.core.db.migrate import Migration, MigrationError, discover


def write(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text(f"-- {name}\n")


def test_an_empty_folder_has_no_migrations(tmp_path: Path) -> None:
    assert discover(tmp_path) == []


def test_migrations_come_in_version_order(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql", "0002_second.sql", "0001_first.sql")
    found = discover(tmp_path)
    assert [(m.version, m.name) for m in found] == [(1, "first"), (2, "second"), (10, "later")]
    assert found[0] == Migration(1, "first", tmp_path / "0001_first.sql")


def test_a_migration_reads_its_sql(tmp_path: Path) -> None:
    (tmp_path / "0001_init.sql").write_text("CREATE TABLE t (id int);\n")
    (migration,) = discover(tmp_path)
    assert migration.sql == "CREATE TABLE t (id int);\n"


def test_files_that_are_not_sql_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql", "README.md", "0002_draft.sql.bak")
    assert [m.version for m in discover(tmp_path)] == [1]


@pytest.mark.parametrize(
    "bad_name",
    [
        "1_init.sql",
        "001_init.sql",
        "00001_init.sql",
        "0001-init.sql",
        "0001_Init.sql",
        "0001_.sql",
        "0001_init-table.sql",
        "init.sql",
        "v0001_init.sql",
    ],
)
def test_a_badly_named_file_is_an_error(tmp_path: Path, bad_name: str) -> None:
    write(tmp_path, "0001_ok.sql", bad_name)
    with pytest.raises(MigrationError, match=bad_name.replace(".", r"\.")):
        discover(tmp_path)


def test_a_version_used_twice_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql", "0002_jobs.sql", "0002_workers.sql")
    with pytest.raises(MigrationError, match="version 2 is used twice"):
        discover(tmp_path)


def test_the_shipped_migrations_are_discoverable() -> None:
    found = discover(REPO_ROOT / "migrations")
    assert found[0].version == 1
    versions = [m.version for m in found]
    assert versions == sorted(set(versions))
