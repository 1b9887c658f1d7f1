"""The scenarios, in the order a run takes them; `--only NAME` picks by these names."""

from __future__ import annotations

from bench.runner import Scenario
from bench.scenarios import (
    cancel,
    idle,
    pickup,
    progress,
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
}
