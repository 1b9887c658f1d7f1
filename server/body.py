"""Reading a JSON request body with a size limit and precise errors."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tidings.core import serialization
from tidings.core.errors import (
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past `max_bytes`, 400 when it is not a JSON object.

    415 when it says it is something else: the media types a page of another site can
    send without asking (text/plain, forms) are never taken for JSON. 422 when a string in
    it holds U+0000, which Postgres cannot store.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json, not {media_type[:100]!r}",
            {"field": "header.Content-Type"},
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        value = serialization.loads(raw)
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON", {"reason": str(exc)}) from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    # Only the escape can put U+0000 in a JSON string, so most bodies skip the walk.
    nul_at = _nul_path(value) if b"\\u0000" in raw else None
    if nul_at is not None:
        raise Unprocessable(
            "request body must not contain the NUL character",
            {"field": nul_at, "reason": "Postgres text and jsonb cannot hold U+0000"},
            code="invalid_request",
        )
    return value


def _nul_path(value: Any) -> str | None:
    """The path of a string or key holding U+0000, or None; iterative, so depth is no limit."""
    stack: list[tuple[str, Any]] = [("body", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return path
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None
