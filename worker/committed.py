"""Jobs committed in an application's own transaction get their queue tokens here.

A transactional submit (`core/transactional.py`) writes no token: its process may not
even reach Redis, and must not before its caller commits. The insert announces the job
with `pg_notify`, which Postgres delivers on commit; this listener, one per worker on a
connection of its own, turns the notices for its queues into tokens. ARQ's checked
enqueue makes the first worker to hear a notice place the token and the others find it
placed; the one that placed it also publishes the job's `queued` event and wakes the
queue. While the connection is down no notice is heard: each time it comes up the
reconciler is poked, and it gives every waiting job without a token one. LISTEN needs a
session of its own, so behind a transaction pooler the listener connects to
`TIDINGS_DATABASE_DIRECT_URL`; without one it does not listen, and the reconciler alone
gives those jobs their tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from tidings.core import queue
from tidings.core.db.pool import CONNECTION_ERRORS, behind_pooler, connect
from tidings.core.service import Service
from tidings.core.transactional import announced, committed_channel
from tidings.worker import cascade

log = structlog.get_logger("tidings.worker")


class CommitListener:
    """LISTENs for transactional submissions and gives their jobs tokens."""

    def __init__(
        self,
        database_url: str,
        redis: ArqRedis,
        names: queue.Names,
        queues: tuple[str, ...],
        *,
        connect_timeout_s: float,
        on_connect: Callable[[], None],
    ) -> None:
        self._database_url = database_url
        self._redis = redis
        self._names = names
        self._queues = set(queues)
        self._channel = committed_channel(names.namespace)
        self._connect_timeout_s = connect_timeout_s
        self._on_connect = on_connect
        self._heard: list[str] = []
        self._cascaded: list[str] = []
        self._wakeup = asyncio.Event()
        self._service = Service(
            "tidings-commit-listener",
            self._listen,
            outages=(*CONNECTION_ERRORS, RedisError),
            log_name="commit_listener",
        )

    def start(self) -> None:
        self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    async def _listen(self) -> None:
        conn = await connect(self._database_url, timeout_s=self._connect_timeout_s)
        if await behind_pooler(conn):
            # A transaction pooler runs LISTEN on a server session it then lends to other
            # clients: the notices would go to whoever holds it, or nowhere.
            await conn.close()
            log.warning(
                "commit_listener.behind_pooler",
                hint="set TIDINGS_DATABASE_DIRECT_URL to a URL past the pooler; until then "
                "jobs submitted in a transaction wait for the reconciler",
            )
            return
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(self._channel, self._hear)
            await conn.add_listener(cascade.CASCADE_CHANNEL, self._hear_cascade)
            self._on_connect()
            while not lost.is_set():
                await self._next_wakeup(lost)
                await self._place_heard()
            raise ConnectionResetError("the listening connection to Postgres was lost")
        finally:
            conn.terminate()

    async def _next_wakeup(self, lost: asyncio.Event) -> None:
        waiting = [asyncio.create_task(self._wakeup.wait()), asyncio.create_task(lost.wait())]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    def _hear(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        self._heard.append(payload)
        self._wakeup.set()

    def _hear_cascade(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        self._cascaded.append(payload)
        self._wakeup.set()

    async def _place_heard(self) -> None:
        """Give every job heard since the last pass its token, if no worker has yet, and
        publish what the database did on its own (`worker/cascade.py`)."""
        self._wakeup.clear()
        heard, self._heard = self._heard, []
        cascaded, self._cascaded = self._cascaded, []
        if cascaded:
            await cascade.place(self._redis, self._names, cascaded)
        placed_events: list[dict[str, Any]] = []
        due_queues: set[str] = set()
        for payload in heard:
            token, event = announced(payload)
            if token.queue not in self._queues:
                continue
            if await queue.enqueue(self._redis, self._names, token):
                placed_events.append(event)
                due_queues.add(token.queue)
        if placed_events:
            await queue.publish_events(self._redis, self._names, placed_events)
            await queue.wake(self._redis, self._names, due_queues)
            log.debug("committed.placed", jobs=len(placed_events))
