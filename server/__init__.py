"""The tidings HTTP server: a Starlette app with REST routes, SSE streams and one hub."""

from tidings.server.app import create_app

__all__ = ["create_app"]
