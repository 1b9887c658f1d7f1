"""What the database did on its own: jobs released, failed or cancelled by a trigger.

When a job ends, Postgres settles its dependents in the same transaction (migration 0008):
a waiting job is released (`queued`), or fails with its dependency, and a cancelled
parent cancels its children. Those events are written by triggers, so no process holds
them to publish; each is announced with `pg_notify` on `CASCADE_CHANNEL` instead. Every
worker's commit listener hears every notice; the first to claim a notice in Redis (SET NX
on the event's job and seq) publishes the event and, for a released job, places its token
(with an id of its own, since the job may have had a token under its attempt before, as a
parent that waited for its children had). A notice nobody heard is covered as any other
lost publish: streams fill holes from Postgres, and the reconciler tokens waiting jobs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from arq.connections import ArqRedis

from tidings.core import queue

CASCADE_CHANNEL = "tidings:cascade"
# How long a claim on a notice is kept: long enough for every worker to have heard it.
CLAIM_TTL_S = 300


def notice_token(notice: dict[str, Any]) -> queue.Token | None:
    """The token a released job needs, or None for an event that releases nothing."""
    if not notice["token"]:
        return None
    event = notice["event"]
    arq_id = f"{queue.arq_job_id(notice['id'], notice['attempt'])}:{event['seq']}"
    run_at = datetime.fromisoformat(notice["run_at"]) if notice["run_at"] else None
    return queue.Token(notice["id"], notice["attempt"], notice["queue"], run_at, arq_id)


async def place(redis: ArqRedis, names: queue.Names, payloads: list[str]) -> int:
    """Publish the events (and place the tokens) of the notices no other worker took;
    how many this worker took."""
    notices = [orjson.loads(payload) for payload in payloads]
    async with redis.pipeline(transaction=False) as pipe:
        for notice in notices:
            event = notice["event"]
            key = f"{names.namespace}:cascade:{event['job_id']}:{event['seq']}"
            pipe.set(key, b"1", nx=True, ex=CLAIM_TTL_S)
        claimed = await pipe.execute()
    mine = [notice for notice, won in zip(notices, claimed, strict=True) if won]
    if not mine:
        return 0
    tokens = [token for notice in mine if (token := notice_token(notice)) is not None]
    await queue.enqueue_fresh(redis, names, tokens, [notice["event"] for notice in mine])
    return len(mine)
