"""tidings: durable async jobs with live progress.

The distribution installs one namespace: `tidings.client` (the HTTP client), `tidings.cli`
(the `tidings` command), and with the `server` extra `tidings.core`, `tidings.server`,
`tidings.worker` and `tidings.migrations`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tidings")
except PackageNotFoundError:  # pragma: no cover - imported from a tree that was never installed
    __version__ = "0+unknown"
