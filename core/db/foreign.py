"""A caller's own asyncpg connection, for statements written in the caller's transaction.

tidings' pools read json/jsonb columns as Python values (`pool.py`). A connection an
application hands in keeps its own codecs: asyncpg's default reads JSON as text,
SQLAlchemy's parses it. The statements that run on such a connection bind their JSON
parameters as text with a cast in SQL, so no codec is involved on the way in; on the way
out, `JsonAsText` parses the json columns a codec left as text. The connection's codecs
are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import asyncpg

from tidings.core import serialization
from tidings.core.db.pool import Connection

# Every json/jsonb column a statement used on a caller's connection can return.
JSON_COLUMNS = frozenset({"args", "result", "error"})


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record.items())
    for name in JSON_COLUMNS.intersection(row):
        if isinstance(row[name], str):
            row[name] = serialization.loads(row[name])
    return row


class JsonAsText:
    """The statement-running part of an asyncpg connection, its rows' JSON parsed."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, query: str, *args: Any) -> str:
        return await self._conn.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return [_row(record) for record in await self._conn.fetch(query, *args)]

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        record = await self._conn.fetchrow(query, *args)
        return None if record is None else _row(record)

    async def fetchmany(self, query: str, args: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        return [_row(record) for record in await self._conn.fetchmany(query, args)]

    def transaction(self) -> Any:
        return self._conn.transaction()


def on_foreign(conn: Connection) -> Connection:
    """`conn` wrapped in `JsonAsText`, typed as a connection: it has every method the
    statement functions that run on a caller's connection call."""
    return cast(Connection, JsonAsText(conn))
