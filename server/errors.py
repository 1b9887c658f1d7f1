"""Every error leaves the server as JSON `{error: {code, message, details?}}`, never a trace."""

from __future__ import annotations

from typing import Any

import structlog
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.errors import TidingsError, Unavailable
from tidings.server.responses import JSONResponse

log = structlog.get_logger("tidings.server")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "malformed_request"}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error body every failure uses."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def tidings_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TidingsError)
    return tidings_error_response(exc)


def tidings_error_response(exc: TidingsError) -> JSONResponse:
    """The response for one of our own errors, with Retry-After or a challenge if it needs one."""
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="tidings"'}
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def backend_unavailable(request: Request, exc: Exception) -> Response:
    which = "redis" if isinstance(exc, RedisError) else "postgres"
    request.app.state.tidings.metrics.backend_errors.labels(which).inc()
    log.warning("backend.unavailable", backend=which, error=repr(exc), path=request.url.path)
    return error_response(
        503,
        "unavailable",
        f"{which} is unreachable; try again shortly",
        headers={"Retry-After": str(Unavailable.retry_after_s)},
    )


# nginx's status for a request its client closed before the answer: nobody reads it, but
# the metrics and the log line say what happened instead of counting a 500.
CLIENT_CLOSED = 499


async def client_gone(request: Request, exc: Exception) -> Response:
    log.info("request.aborted", path=request.url.path, method=request.method)
    return error_response(CLIENT_CLOSED, "client_closed_request", "the client went away")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("request.crashed", path=request.url.path, method=request.method)
    return error_response(500, "internal", "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    TidingsError: tidings_error,
    HTTPException: http_error,
    ClientDisconnect: client_gone,
    RedisError: backend_unavailable,
    **dict.fromkeys(CONNECTION_ERRORS, backend_unavailable),
    Exception: unexpected_error,
}


async def response_for_error(request: Request, exc: Exception) -> Response:
    """What the app's handlers answer for `exc`: the handler of its closest class wins."""
    handler = next(
        EXCEPTION_HANDLERS[cls] for cls in type(exc).__mro__ if cls in EXCEPTION_HANDLERS
    )
    response: Response = await handler(request, exc)
    return response
