"""Reading a JSON request body with a size limit and precise errors."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from core import serialization
from core.errors import BadRequest, PayloadTooLarge


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past `max_bytes`, 400 when it is not a JSON object."""
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
    return value
