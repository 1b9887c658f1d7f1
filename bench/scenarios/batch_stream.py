"""13. A 10,000-job batch followed on its own stream: how many events it sends, and at what
cost to the server.

One client follows `GET /batches/{id}/events` from the batch's creation to
`batch.finished` while one worker runs its 10,000 noops. Every member transition is sent
once (queued, started, succeeded: 30,000 plus the end, checked against the counts), and
the aggregated `progress` snapshots are coalesced: at most 10 a second is the target (the
stream reads Postgres at most every 200 ms). Server CPU is read over the stream's life,
and given per 1,000 transitions sent.
"""

from __future__ import annotations

import time

from bench.http import EventStream
from bench.jobs import TENANT, request
from bench.report import Row, Target
from bench.runner import Bench
from bench.stats import median
from tidings.core import batches

SCENARIO = "13 batch stream (10,000 jobs)"
MEMBERS = 10_000
QUICK_MEMBERS = 2_000
PROGRESS_RATE = Target(at_most=10.0)


async def run(bench: Bench) -> list[Row]:
    members = QUICK_MEMBERS if bench.config.reps == 1 else MEMBERS
    rates: list[float] = []
    cpu_per_k: list[float] = []
    sent: list[float] = []
    async with bench.services.server() as server, bench.services.worker():
        for _ in range(bench.config.reps):
            before = await bench.cpu(server.service.pid)
            started = time.monotonic()
            batch_id, _ = await batches.create(
                bench.jobs.submitter, [request("noop", None, "default")] * members, tenant=TENANT
            )
            stream = await EventStream.open(server.host, server.port, f"/batches/{batch_id}/events")
            progress = transitions = 0
            try:
                async for event in stream.events():
                    if event.event == "progress":
                        progress += 1
                    elif event.event == "job":
                        transitions += 1
                    elif event.event == "batch.finished":
                        finished = event.json()
                        break
            finally:
                await stream.close()
            seconds = time.monotonic() - started
            used = await bench.cpu(server.service.pid) - before
            if transitions != 3 * members or finished["counts"]["succeeded"] != members:
                raise RuntimeError(f"{transitions} transitions sent, counts {finished['counts']}")
            rates.append(progress / seconds)
            cpu_per_k.append(used.process_s * 1000 / transitions * 1000)
            sent.append(transitions + 1)
    note = f"{members:,} noops, one worker, median of {bench.config.reps}"
    return [
        Row(
            SCENARIO,
            "progress events a second",
            "/s",
            median(rates),
            target=PROGRESS_RATE,
            note=note,
            reps={"tidings": rates},
        ),
        Row(
            SCENARIO,
            "events with a seq sent (all of them, once)",
            "",
            median(sent),
            reps={"tidings": sent},
        ),
        Row(
            SCENARIO,
            "server CPU per 1,000 transitions sent",
            "ms",
            median(cpu_per_k),
            reps={"tidings": cpu_per_k},
        ),
    ]
