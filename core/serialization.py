"""JSON, and only JSON, for everything that crosses a process boundary."""

from __future__ import annotations

import re
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


# How orjson writes U+0000 in a string: "\u0000" after an even number of backslashes (an
# odd number would make it the text "\u0000", which jsonb stores fine).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def storable(value: Any) -> None:
    """Raise ValueError (or TypeError) unless `value` can be stored as Postgres jsonb.

    JSON allows the character U+0000 in strings; jsonb does not.
    """
    if _NUL_ESCAPE.search(orjson.dumps(value)):
        raise ValueError("JSON stored in Postgres cannot contain the character U+0000")
