"""Paths and URLs below the mount point, as Starlette's router and a client see them."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.types import Scope

from tidings.server.mount import app_url, route_path


@pytest.mark.parametrize(
    ("path", "root", "below"),
    [
        ("/jobs", "", "/jobs"),
        ("/tidings/jobs", "/tidings", "/jobs"),
        ("/tidings/", "/tidings", "/"),
        ("/tidings", "/tidings", ""),
        ("/tidingsx/jobs", "/tidings", "/tidingsx/jobs"),  # not below the mount point
        ("/a/b/events", "/a/b", "/events"),
    ],
)
def test_the_route_path_is_the_path_below_the_mount_point(path: str, root: str, below: str) -> None:
    assert route_path({"type": "http", "path": path, "root_path": root}) == below


def request(path: str, root: str, host: str = "example.org:8080") -> Request:
    scope: Scope = {
        "type": "http",
        "scheme": "https",
        "path": path,
        "root_path": root,
        "query_string": b"limit=5",
        "headers": [(b"host", host.encode())],
        "server": ("10.0.0.1", 9000),
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("path", "root", "url"),
    [
        ("/jobs", "", "https://example.org:8080"),
        ("/tidings/jobs/1", "/tidings", "https://example.org:8080/tidings"),
        ("/api/tidings/", "/api/tidings", "https://example.org:8080/api/tidings"),
    ],
)
def test_the_app_url_is_the_host_and_the_mount_point(path: str, root: str, url: str) -> None:
    assert app_url(request(path, root)) == url


def test_the_app_url_is_the_mount_point_not_the_hosts_root() -> None:
    # A host's Mount keeps its own root as app_root_path, which `request.base_url` uses.
    mounted = request("/tidings/jobs", "/tidings")
    mounted.scope["app_root_path"] = ""
    assert str(mounted.base_url) == "https://example.org:8080/"
    assert app_url(mounted) == "https://example.org:8080/tidings"
