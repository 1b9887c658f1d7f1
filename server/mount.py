"""Where the app is mounted: the path it answers under, and a request's path below it.

Mounted in a host app (`host.mount("/tidings", app)`) or served behind a proxy with
uvicorn's `--root-path`, a request's scope carries the mount point as `root_path`, and
its `path` still starts with it (ASGI). Every path the app matches is the path below the
mount point, and every URL it hands out starts with the mount point, or a client that
follows one leaves the app.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope


def root_path(scope: Scope) -> str:
    """The path the app is mounted at (`/tidings`); empty at the server's root."""
    root: str = scope.get("root_path", "")
    return root


def route_path(scope: Scope) -> str:
    """The request's path below the mount point: `/jobs` for `/tidings/jobs`.

    As Starlette's router reads it (`starlette._utils.get_route_path`, which is private).
    """
    path: str = scope["path"]
    root = root_path(scope)
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def app_url(request: Request) -> str:
    """The app's own absolute URL, without a trailing slash: `http://host:port/tidings`.

    Not `request.base_url`: that is the outermost app's root, the host's when mounted.
    """
    return str(request.url.replace(path=root_path(request.scope), query="")).rstrip("/")
