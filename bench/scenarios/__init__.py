"""The scenarios, in the order a run takes them; `--only NAME` picks by these names."""

from __future__ import annotations

from bench.runner import Scenario
from bench.scenarios import (
    batch_stream,
    cancel,
    fairness,
    fan_in,
    finding,
    idle,
    pickup,
    progress,
    rate_limit,
    recovery,
    rest,
    sse_latency,
    sse_scale,
    throughput,
    transactional,
)

SCENARIOS: dict[str, Scenario] = {
    "throughput": throughput.run,
    "pickup": pickup.run,
    "idle": idle.run,
    "progress": progress.run,
    "sse-latency": sse_latency.run,
    "rest": rest.run,
    "sse-scale": sse_scale.run,
    "cancel": cancel.run,
    "transactional": transactional.run,
    "recovery": recovery.run,
    "fan-in": fan_in.run,
    "batch-stream": batch_stream.run,
    "fairness": fairness.run,
    "rate-limit": rate_limit.run,
    # Last: it leaves a million jobs in the run's database.
    "finding": finding.run,
}
