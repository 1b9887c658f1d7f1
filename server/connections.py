"""Connection hygiene below HTTP: caps on open connections and a deadline for headers.

uvicorn accepts every connection and waits for its headers forever, so a client that
opens thousands of connections and sends a header line now and then (slowloris) holds
the process's file descriptors until none are left. `GuardedProtocol` is uvicorn's
httptools protocol with three rules added, all decided before any ASGI code runs:

- a connection from an address that already holds `max_per_address` is answered
  429 and closed at once; past `max_open` in all, 503 and closed;
- a request whose headers are not complete within `header_timeout_s` of its first byte
  (or of the connection, for the first request) is answered 408 and closed;
- idle keep-alive connections close after uvicorn's `timeout_keep_alive` (set from
  `TIDINGS_IDLE_TIMEOUT_S`).

Each refusal is a JSON error body like every other error. `ConnectionGuard` also serves
its counts as Prometheus series.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import orjson
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("tidings.server")

# Descriptors kept back from the connection cap for Postgres, Redis, logs and the listener.
RESERVED_FDS = 512
MIN_CONNECTIONS = 64


@dataclass(frozen=True)
class Refusal:
    """What a refused or timed-out connection is told before it is closed."""

    status: int
    reason: str
    code: str
    message: str

    def response(self) -> bytes:
        body = orjson.dumps({"error": {"code": self.code, "message": self.message}})
        head = (
            f"HTTP/1.1 {self.status} {self.reason}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "retry-after: 1\r\n"
            "connection: close\r\n\r\n"
        )
        return head.encode("ascii") + body


ADDRESS_FULL = Refusal(
    429,
    "Too Many Requests",
    "too_many_connections",
    "this address holds too many open connections; close some and retry",
)
PROCESS_FULL = Refusal(
    503,
    "Service Unavailable",
    "server_busy",
    "this server holds as many connections as it can; retry shortly or use another",
)
HEADERS_LATE = Refusal(
    408, "Request Timeout", "request_timeout", "the request's headers did not arrive in time"
)


@dataclass(eq=False)  # a collector is registered by identity
class ConnectionGuard:
    """Counts open connections per client address and in all, and the ones it closed."""

    max_open: int
    max_per_address: int  # 0: no per-address cap
    header_timeout_s: float
    open: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)

    def admit(self, address: str) -> Refusal | None:
        """Take a slot for a new connection from `address`, or say why there is none."""
        if self.open >= self.max_open:
            self.closed["process_cap"] += 1
            return PROCESS_FULL
        if self.max_per_address and self.by_address[address] >= self.max_per_address:
            self.closed["address_cap"] += 1
            return ADDRESS_FULL
        self.open += 1
        self.by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """Give back the slot of a connection that `admit` let in."""
        self.open -= 1
        self.by_address[address] -= 1
        if not self.by_address[address]:
            del self.by_address[address]

    def collect(self) -> Iterator[Metric]:
        """The guard's series, read when `/metrics` is scraped (a Prometheus collector)."""
        yield GaugeMetricFamily(
            "tidings_connections_open", "Client connections open on this server.", self.open
        )
        closed = CounterMetricFamily(
            "tidings_connections_refused",
            "Connections closed by the guard, by reason.",
            labels=["reason"],
        )
        for reason in ("address_cap", "process_cap", "header_timeout"):
            closed.add_metric([reason], self.closed[reason])
        yield closed


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under a `ConnectionGuard` (see the module docstring)."""

    guard: ClassVar[ConnectionGuard]
    _address: str | None = None  # set once admitted: the slot to give back
    _headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        refusal = self.guard.admit(address)
        if refusal is not None:
            transport.write(refusal.response())
            transport.close()
            return
        self._address = address
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        if self._address is not None:
            self.guard.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is None:  # refused: its bytes are not parsed
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self._headers_due is None:
            self._arm_header_deadline()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def _arm_header_deadline(self) -> None:
        self._headers_due = self.loop.call_later(self.guard.header_timeout_s, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if self.transport.is_closing():
            return
        self.guard.closed["header_timeout"] += 1
        if self.cycle is None or self.cycle.response_complete:  # no response is mid-way
            self.transport.write(HEADERS_LATE.response())
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """A `GuardedProtocol` class bound to `guard`, for `uvicorn.Config(http=...)`."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("fd_limit.raised", soft=soft, now=target)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("fd_limit.unchanged", soft=soft, hard=hard, error=str(exc))
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(configured: int, fd_limit: int) -> int:
    """The per-process connection cap: the setting, or the fd limit less a reserve (0)."""
    if configured:
        return configured
    return max(fd_limit - RESERVED_FDS, MIN_CONNECTIONS)
