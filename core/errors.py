"""The project's own exception types; driver errors are wrapped into these at the boundary."""

from __future__ import annotations

from typing import Any


class TidingsError(Exception):
    """Base of every error tidings raises on purpose; carries an HTTP status and a code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.code = code or type(self).code


class BadRequest(TidingsError):
    status, code = 400, "malformed_request"


class Forbidden(TidingsError):
    status, code = 403, "forbidden"


class NotFound(TidingsError):
    status, code = 404, "not_found"


class Conflict(TidingsError):
    status, code = 409, "conflict"


class PayloadTooLarge(TidingsError):
    status, code = 413, "body_too_large"


class UnsupportedMediaType(TidingsError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(TidingsError):
    status, code = 422, "invalid"


class Unavailable(TidingsError):
    """Postgres or Redis could not be reached; the caller may retry later."""

    status, code = 503, "unavailable"
    retry_after_s = 2
