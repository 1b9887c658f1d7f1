"""Prometheus metrics of a server process, in a registry of its own (no global state).

Submissions and HTTP traffic are counted where they happen. Job outcomes, run times and
waits are observed from the events feed the hub receives: every server process sees the
events of the whole cluster, so aggregate those series with `max` across server
instances, not `sum`. Queue depth and worker liveness are read from Postgres, at most
once per `refresh_s`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tidings.core.db import fairness, workers

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

_OUTCOME_KINDS = {"succeeded", "failed", "cancelled"}
# Distinct task or queue names a server labels series with; past this, `other`. Names come
# from tenants' submissions, and each new one would be a new series in every scrape.
MAX_LABEL_VALUES = 200
OTHER = "other"


@dataclass
class LabelCap:
    """Passes the first `limit` distinct values it is shown, and `other` for any later one."""

    limit: int = MAX_LABEL_VALUES
    seen: set[str] = field(default_factory=set)

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


@dataclass
class ServerMetrics:
    """Every series `/metrics` exposes."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    refresh_s: float = 5.0
    tasks: LabelCap = field(default_factory=LabelCap)
    queues: LabelCap = field(default_factory=LabelCap)
    _refreshed_at: float = float("-inf")
    # The rate buckets' refusals seen at the last refresh: the counter grows by the difference.
    _rate_limited_seen: int | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs_submitted = Counter(
            "tidings_jobs_submitted",
            "Jobs created by this server.",
            ["task", "queue"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "tidings_jobs_finished",
            "Jobs that reached a terminal state, observed cluster-wide.",
            ["task", "queue", "outcome"],
            registry=r,
        )
        self.jobs_retried = Counter(
            "tidings_jobs_retried",
            "Failed attempts that will be retried, cluster-wide.",
            ["task", "queue"],
            registry=r,
        )
        self.jobs_requeued = Counter(
            "tidings_jobs_requeued",
            "Attempts recovered from a lost or stopping worker.",
            ["task", "queue"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "tidings_job_run_seconds",
            "How long attempts ran.",
            ["task"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.wait_seconds = Histogram(
            "tidings_job_wait_seconds",
            "From due (submitted or run_at) to started.",
            ["task"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "tidings_queue_depth", "Due jobs waiting to start.", ["queue"], registry=r
        )
        self.queue_oldest_age = Gauge(
            "tidings_queue_oldest_age_seconds",
            "Age of the oldest due waiting job.",
            ["queue"],
            registry=r,
        )
        self.jobs_without_worker = Gauge(
            "tidings_jobs_without_worker",
            "Due jobs whose task no live worker of their queue has registered.",
            ["queue"],
            registry=r,
        )
        self.jobs_waiting_for_key = Gauge(
            "tidings_jobs_waiting_for_key",
            "Due jobs whose concurrency key is at its max_per_key.",
            ["queue"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tidings_rate_limited",
            "Claims a rate limit's bucket refused (the job waited in its queue).",
            registry=r,
        )
        self.workers_live = Gauge(
            "tidings_workers_live", "Workers whose heartbeat is recent.", registry=r
        )
        self.sse_streams = Gauge(
            "tidings_sse_streams", "Open SSE streams on this server.", registry=r
        )
        self.backend_errors = Counter(
            "tidings_backend_errors",
            "Failed calls to Postgres or Redis.",
            ["backend"],
            registry=r,
        )
        self.http_requests = Counter(
            "tidings_http_requests",
            "HTTP requests handled.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "tidings_http_request_seconds",
            "HTTP request handling time.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def count_submitted(self, row: asyncpg.Record) -> None:
        """Count a job this server created."""
        self.jobs_submitted.labels(self.tasks(row["task"]), self.queues(row["queue"])).inc()

    def observe_event(self, event: dict[str, Any]) -> None:
        """Count one lifecycle event from the cluster's feed."""
        kind, task, queue = event.get("kind"), event.get("task"), event.get("queue")
        if not isinstance(task, str) or not isinstance(queue, str):
            return
        task, queue = self.tasks(task), self.queues(queue)
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        assert isinstance(data, dict)
        if kind in _OUTCOME_KINDS:
            self.jobs_finished.labels(task, queue, kind).inc()
        elif kind == "retrying":
            self.jobs_retried.labels(task, queue).inc()
        elif kind == "requeued":
            self.jobs_requeued.labels(task, queue).inc()
        if isinstance(data.get("run_s"), int | float):
            self.run_seconds.labels(task).observe(data["run_s"])
        if kind == "started" and isinstance(data.get("wait_s"), int | float):
            self.wait_seconds.labels(task).observe(max(0.0, data["wait_s"]))

    async def refresh(self, pool: asyncpg.Pool, heartbeat_s: float) -> None:
        """Re-read queue depth and live workers from Postgres if the cache is stale."""
        now = time.monotonic()
        if now - self._refreshed_at < self.refresh_s:
            return
        self._refreshed_at = now
        live_within_s = workers.live_within_s(heartbeat_s)
        rows = await workers.queue_stats(pool, tenant=None, live_within_s=live_within_s)
        depth: dict[str, int] = {}
        oldest: dict[str, float] = {}
        stuck: dict[str, int] = {}
        for row in rows:  # queues past the label cap add up under `other`
            queue = self.queues(row["queue"])
            depth[queue] = depth.get(queue, 0) + row["due"]
            oldest[queue] = max(oldest.get(queue, 0.0), row["oldest_due_s"] or 0.0)
            stuck[queue] = stuck.get(queue, 0) + row["without_worker"]
        self.queue_depth.clear()
        self.queue_oldest_age.clear()
        self.jobs_without_worker.clear()
        for queue, due in depth.items():
            self.queue_depth.labels(queue).set(due)
            self.queue_oldest_age.labels(queue).set(oldest[queue])
            self.jobs_without_worker.labels(queue).set(stuck[queue])
        await self._refresh_limits(pool)
        listed = await workers.list_workers(pool, live_within_s=live_within_s)
        self.workers_live.set(sum(1 for worker in listed if worker["live"]))

    async def _refresh_limits(self, pool: asyncpg.Pool) -> None:
        """Jobs held back by their concurrency key, and the rate buckets' refusals."""
        held: dict[str, int] = {}
        for row in await fairness.waiting_for_key(pool):
            queue = self.queues(row["queue"])
            held[queue] = held.get(queue, 0) + row["waiting"]
        self.jobs_waiting_for_key.clear()
        for queue, waiting in held.items():
            self.jobs_waiting_for_key.labels(queue).set(waiting)
        total = await fairness.rate_limited_total(pool)
        if self._rate_limited_seen is not None and total > self._rate_limited_seen:
            self.rate_limited.inc(total - self._rate_limited_seen)
        elif self._rate_limited_seen is None:
            self.rate_limited.inc(total)
        self._rate_limited_seen = total

    def render(self) -> bytes:
        """The text exposition of every series."""
        return generate_latest(self.registry)
