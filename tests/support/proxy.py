"""A TCP proxy a test puts between a client and the server, to break connections on purpose.

It forwards bytes both ways unchanged. A test can arm a cut that fires when the server's
bytes contain a marker (say the `id: 4` line of an SSE event): the proxy forwards up to the
end of the marker, then aborts both sides, so the client is left holding half an event. It
can also refuse the next few connections, as a server that is restarting would.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 65536
REQUEST_HEAD = re.compile(rb"(?:GET|POST|PUT|DELETE|PATCH|HEAD) \S+ HTTP/1\.1\r\n.*?\r\n\r\n", re.S)


@dataclass
class Connection:
    """One accepted client connection and what passed through it."""

    upstream_bytes: bytearray = field(default_factory=bytearray)
    downstream_bytes: bytearray = field(default_factory=bytearray)
    cut: bool = False


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream host:port; see the module docstring."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        assert parts.hostname is not None and parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut_marker: bytes | None = None
        self._refuse_after_cut = 0
        self.cut_done = asyncio.Event()
        self.refuse_next = 0
        self.refused = 0
        self.connections: list[Connection] = []
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut_after(self, marker: bytes, *, then_refuse: int = 0) -> None:
        """Break the connection that next carries `marker` downstream, right after it; then
        refuse the next `then_refuse` connections, as a server that is restarting would."""
        self._cut_marker = marker
        self._refuse_after_cut = then_refuse
        self.cut_done.clear()

    def requests(self) -> list[str]:
        """The request heads (request line and headers) clients sent, in order."""
        return [
            head.decode("latin-1")
            for connection in self.connections
            for head in REQUEST_HEAD.findall(bytes(connection.upstream_bytes))
        ]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                self.refused += 1
                writer.transport.abort()
                return
            await self._forward(reader, writer)
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection()
        self.connections.append(connection)
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers.add(up_writer)

        async def upstream() -> None:
            while chunk := await reader.read(CHUNK):
                connection.upstream_bytes += chunk
                up_writer.write(chunk)
                await up_writer.drain()
            with suppress(OSError):
                up_writer.write_eof()

        async def downstream() -> None:
            seen = bytearray()
            while chunk := await up_reader.read(CHUNK):
                marker = self._cut_marker
                if marker is not None:
                    start = len(seen)
                    seen += chunk
                    found = seen.find(marker, max(0, start - len(marker)))
                    if found >= 0:
                        # Forward up to the end of the marker, then break both sides.
                        head = chunk[: found + len(marker) - start]
                        connection.downstream_bytes += head
                        writer.write(head)
                        await writer.drain()
                        self._cut_marker = None
                        self.refuse_next = self._refuse_after_cut
                        connection.cut = True
                        writer.transport.abort()
                        up_writer.transport.abort()
                        self.cut_done.set()
                        return
                connection.downstream_bytes += chunk
                writer.write(chunk)
                await writer.drain()
            with suppress(OSError):
                writer.write_eof()

        try:
            pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()
            writer.transport.abort()


@asynccontextmanager
async def proxy_to(upstream_url: str) -> AsyncIterator[TcpProxy]:
    """A started `TcpProxy` in front of `upstream_url`, closed when the block ends."""
    proxy = TcpProxy(upstream_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
