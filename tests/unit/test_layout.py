"""The package boundaries the installable layout promises, read from the source."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Callable
from pathlib import Path

from tests.support.paths import REPO_ROOT

PARTS = ("core", "server", "worker", "client", "cli", "tidings", "bench", "tests")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute names only."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def python_files(*parts: str) -> list[Path]:
    return sorted(path for part in parts for path in (REPO_ROOT / part).rglob("*.py"))


def offenders(parts: tuple[str, ...], forbidden: Callable[[str], bool]) -> dict[str, set[str]]:
    """Each file under `parts` that imports a module `forbidden` accepts, with those modules."""
    found = {}
    for path in python_files(*parts):
        bad = {name for name in imported_modules(path) if forbidden(name)}
        if bad:
            found[str(path.relative_to(REPO_ROOT))] = bad
    return found


def test_every_import_of_tidings_goes_through_its_namespace() -> None:
    bare = ("core", "server", "worker", "client", "cli", "migrations")
    assert offenders(PARTS, lambda name: name.split(".")[0] in bare) == {}


def test_the_client_imports_nothing_else_of_tidings() -> None:
    def other_part(name: str) -> bool:
        return name.startswith("tidings") and not name.startswith("tidings.client")

    assert offenders(("client",), other_part) == {}


def test_core_imports_neither_side() -> None:
    sides = ("tidings.server", "tidings.worker", "tidings.cli")
    assert offenders(("core",), lambda name: name.startswith(sides)) == {}


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """setuptools ships only the packages pyproject.toml lists: a new subpackage that is
    missing there imports from a checkout and is absent from the wheel."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
