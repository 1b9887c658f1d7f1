"""The connection guard: caps per address and per process, a deadline for headers.

Before the guard, uvicorn waited for a request's headers forever and accepted every
connection, so a few thousand slow connections held every file descriptor of the server.
These tests talk raw TCP to a real uvicorn serving a trivial app behind the guard, from
two loopback addresses (127.0.0.1 and 127.0.0.2).
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send

from tests.support.servers import ServerHandle, free_port, run_server, start_server
from tidings.core.settings import Settings
from tidings.server.app import GracefulServer
from tidings.server.connections import ConnectionGuard, guarded_protocol, raise_fd_limit

HEAD = b"GET / HTTP/1.1\r\nHost: localhost\r\n"
REQUEST = HEAD + b"\r\n"
WITHIN_S = 10.0  # a generous bound for "closed at once", on a busy machine


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


@dataclass
class Guarded:
    guard: ConnectionGuard
    port: int

    async def connect(
        self, source: str = "127.0.0.1"
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))

    async def until_open(self, count: int) -> None:
        """Wait for the server to have seen connections come and go down to `count`.

        The guard announces nothing (it sits on uvicorn's hot path), so its count is read
        again every tick of this loop, which is also the server's.
        """
        async with asyncio.timeout(WITHIN_S):
            while self.guard.open != count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)


@asynccontextmanager
async def guarded(
    max_open: int = 100, max_per_address: int = 100, header_timeout_s: float = 5.0
) -> AsyncIterator[Guarded]:
    guard = ConnectionGuard(max_open, max_per_address, header_timeout_s)
    port = free_port()
    config = uvicorn.Config(
        hello,
        host="127.0.0.1",
        port=port,
        http=guarded_protocol(guard),
        timeout_keep_alive=30,
        log_config=None,
        access_log=False,
    )
    async with run_server(GracefulServer(config)):
        yield Guarded(guard, port)


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of the one response a refused or timed-out connection gets."""
    async with asyncio.timeout(WITHIN_S):
        raw = await reader.read()  # until the server closes
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split()[1]), body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Send one whole request and return the response's status line."""
    writer.write(REQUEST)
    async with asyncio.timeout(WITHIN_S):
        status = await reader.readline()
        await reader.readuntil(b"hello")
    return status


async def test_an_address_past_its_cap_is_refused_and_other_addresses_are_not() -> None:
    async with guarded(max_per_address=3) as server, AsyncExitStack() as held:
        writers = []
        for _ in range(3):
            _, writer = await server.connect("127.0.0.1")
            held.callback(writer.close)
            writers.append(writer)
        await server.until_open(3)

        reader, writer = await server.connect("127.0.0.1")
        held.callback(writer.close)
        status, body = await answer(reader)
        assert status == 429
        assert json.loads(body)["error"]["code"] == "too_many_connections"

        other_reader, other_writer = await server.connect("127.0.0.2")
        held.callback(other_writer.close)
        assert b" 200 " in await exchange(other_reader, other_writer)

        writers[0].close()
        await server.until_open(3)  # two held from .1 and the one from .2
        again_reader, again_writer = await server.connect("127.0.0.1")
        held.callback(again_writer.close)
        assert b" 200 " in await exchange(again_reader, again_writer)
        assert server.guard.closed["address_cap"] == 1
        assert server.guard.by_address == {"127.0.0.1": 3, "127.0.0.2": 1}


async def test_a_process_past_its_cap_refuses_every_address() -> None:
    async with guarded(max_open=2) as server, AsyncExitStack() as held:
        for source in ("127.0.0.1", "127.0.0.2"):
            _, writer = await server.connect(source)
            held.callback(writer.close)
        await server.until_open(2)
        reader, writer = await server.connect("127.0.0.3")
        held.callback(writer.close)
        status, body = await answer(reader)
        assert status == 503
        assert json.loads(body)["error"]["code"] == "server_busy"
        assert server.guard.closed["process_cap"] == 1


async def test_headers_that_trickle_in_are_cut_off_at_the_deadline() -> None:
    """One header line every 50 ms keeps no connection open past the header deadline."""
    async with guarded(header_timeout_s=0.5) as server:
        reader, writer = await server.connect()
        started = time.monotonic()
        writer.write(HEAD)

        async def trickle() -> None:
            for n in range(1000):
                await asyncio.sleep(0.05)
                if writer.is_closing():
                    return
                writer.write(b"X-Slow-%d: 1\r\n" % n)

        trickling = asyncio.create_task(trickle())
        try:
            status, body = await answer(reader)
        finally:
            trickling.cancel()
            writer.close()
        assert status == 408
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert 0.5 <= time.monotonic() - started < WITHIN_S
        assert server.guard.closed["header_timeout"] == 1
        await server.until_open(0)


async def test_a_kept_alive_connection_has_the_same_deadline_for_its_next_request() -> None:
    async with guarded(header_timeout_s=0.5) as server:
        reader, writer = await server.connect()
        try:
            assert b" 200 " in await exchange(reader, writer)
            writer.write(HEAD)  # the next request's headers never end
            status, _ = await answer(reader)
        finally:
            writer.close()
        assert status == 408


async def test_a_prompt_request_is_served_and_its_slot_given_back() -> None:
    async with guarded(header_timeout_s=0.5) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            for _ in range(3):
                response = await client.get("/")
                assert response.status_code == 200
                await asyncio.sleep(0.6)  # idle past the header deadline, between requests
        await server.until_open(0)
        assert server.guard.closed["header_timeout"] == 0


async def test_the_guard_reports_its_counts_as_prometheus_series() -> None:
    guard = ConnectionGuard(max_open=2, max_per_address=1, header_timeout_s=1.0)
    assert guard.admit("a") is None
    assert guard.admit("a") is not None  # address cap
    assert guard.admit("b") is None
    assert guard.admit("c") is not None  # process cap
    registry = CollectorRegistry()
    registry.register(guard)
    text = generate_latest(registry).decode()
    assert "tidings_connections_open 2.0" in text
    assert 'tidings_connections_refused_total{reason="address_cap"} 1.0' in text
    assert 'tidings_connections_refused_total{reason="process_cap"} 1.0' in text
    guard.release("a")
    guard.release("b")
    assert guard.open == 0 and not guard.by_address


def test_the_process_raises_its_file_descriptor_soft_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        limit = raise_fd_limit()
        assert limit == resource.getrlimit(resource.RLIMIT_NOFILE)[0] > lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
async def guarded_server(settings: Settings) -> AsyncIterator[ServerHandle]:
    strict = replace(
        settings, header_timeout_s=0.5, max_connections_per_address=50, operator_token="o" * 16
    )
    async with start_server(strict) as server:
        yield server


async def test_the_server_runs_behind_the_guard_its_settings_describe(
    guarded_server: ServerHandle,
) -> None:
    port = int(guarded_server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    try:
        status, _ = await answer(reader)
    finally:
        writer.close()
    assert status == 408
    async with httpx.AsyncClient(base_url=guarded_server.url) as client:
        metrics = await client.get("/metrics", headers={"Authorization": "Bearer " + "o" * 16})
    assert metrics.status_code == 200
    assert 'tidings_connections_refused_total{reason="header_timeout"} 1.0' in metrics.text
    assert "tidings_connections_open" in metrics.text
