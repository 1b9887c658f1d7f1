"""A minimal HTTP/1.1 client for load generation: keep-alive requests and SSE streams.

httpx spends a few hundred microseconds of CPU per request; on a 2-core machine the
client would then take the CPU the server under test needs, and thousands of streams
would cost it more still. This speaks just enough HTTP/1.1 (Content-Length and chunked
bodies, `text/event-stream`) to drive uvicorn for a small fraction of that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson

READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and lower-cased headers of a response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def iter_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The body as it arrives: chunked, Content-Length, or until the connection closes."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection mid-body")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                await reader.readline()  # the blank line after the last chunk (no trailers)
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while chunk := await reader.read(65536):
            yield chunk


class Connection:
    """One keep-alive connection sending one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        """Send a request (with a JSON body when given) and read the whole response."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port, limit=READ_LIMIT)
        reader, writer = self._streams
        payload = b"" if body is None else orjson.dumps(body)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        writer.write(head.encode() + payload)
        status, headers = await read_head(reader)
        data = b"".join([chunk async for chunk in iter_body(reader, headers)])
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, data)

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


@dataclass(frozen=True)
class SseEvent:
    """One dispatched server-sent event and when this client finished reading it."""

    id: str | None
    event: str | None
    data: str
    received_at: float

    def json(self) -> Any:
        return orjson.loads(self.data)


class EventStream:
    """An open `GET` of a `text/event-stream` resource."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._headers = headers

    @classmethod
    async def open(cls, host: str, port: int, path: str) -> EventStream:
        """Connect and read the response head; fails unless the server answers 200."""
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        writer.write(request.encode())
        try:
            status, headers = await read_head(reader)
            if status != 200:
                body = b"".join([chunk async for chunk in iter_body(reader, headers)])
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, headers)

    async def events(self) -> AsyncIterator[SseEvent]:
        """Each event as it is dispatched; comments (keep-alives) are skipped."""
        buffer = b""
        async for chunk in iter_body(self._reader, self._headers):
            received_at = time.time()
            # Normalised on the whole buffer, so a CRLF split across chunks is still found.
            buffer = (buffer + chunk).replace(b"\r\n", b"\n")
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                event = parse_block(block, received_at)
                if event is not None:
                    yield event

    async def close(self) -> None:
        self._writer.close()
        with suppress(OSError):
            await self._writer.wait_closed()


def parse_block(block: bytes, received_at: float) -> SseEvent | None:
    """One event from its lines; None for a block without data (a comment, a keep-alive)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in block.decode().split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    if not data:
        return None
    return SseEvent(fields.get("id"), fields.get("event"), "\n".join(data), received_at)
