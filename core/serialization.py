"""JSON, and only JSON, for everything that crosses a process boundary."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Encode `value` as compact JSON bytes (datetimes as ISO 8601, UUIDs as strings)."""
    return orjson.dumps(value)


def encoded(value: Any) -> orjson.Fragment:
    """`value` encoded once, to embed as is wherever it is dumped again (or sent as jsonb)."""
    return orjson.Fragment(orjson.dumps(value))


def dumps_str(value: Any) -> str:
    """Encode `value` as a JSON string."""
    return orjson.dumps(value).decode()


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes or text."""
    return orjson.loads(data)
