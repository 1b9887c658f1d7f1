"""tidings: durable async jobs with live progress.

The distribution installs one namespace: `tidings.client` (the HTTP client), `tidings.cli`
(the `tidings` command), and with the `server` extra `tidings.core`, `tidings.server`,
`tidings.worker`, `tidings.migrations` and `tidings.Tidings` (submit from your own
process, also inside your own database transaction).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tidings")
except PackageNotFoundError:  # pragma: no cover - imported from a tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    """`from tidings import Tidings`: the in-process API, which needs the `server` extra."""
    if name == "Tidings":
        try:
            from tidings.core.inprocess import Tidings
        except ImportError as exc:  # asyncpg, arq, …: not in the bare install
            raise ImportError(
                f"tidings.Tidings needs {exc.name}: pip install 'tidings[server]'"
            ) from exc
        return Tidings
    raise AttributeError(f"module 'tidings' has no attribute {name!r}")
