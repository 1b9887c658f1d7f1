"""Prometheus metrics of a worker process, served on `TIDINGS_WORKER_METRICS_PORT`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass
class WorkerMetrics:
    """Every series a worker exposes, in a registry of its own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs_in_flight = Gauge(
            "tidings_worker_jobs_in_flight", "Attempts running in this worker.", registry=r
        )
        self.jobs = Counter(
            "tidings_worker_jobs",
            "Attempts this worker ended, by outcome.",
            ["task", "queue", "outcome"],
            registry=r,
        )
        self.events_written = Counter(
            "tidings_worker_events_written", "Job events this worker persisted.", registry=r
        )
        self.write_batch_size = Histogram(
            "tidings_worker_write_batch_size",
            "Events per group-committed write.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "tidings_worker_heartbeat_age_seconds",
            "Seconds since the last heartbeat.",
            registry=r,
        )
        self.pruned_jobs = Counter(
            "tidings_worker_pruned_jobs",
            "Finished jobs this worker deleted past their retention, by status.",
            ["status"],
            registry=r,
        )
        self.pruned_events = Counter(
            "tidings_worker_pruned_events",
            "Events this worker deleted with their jobs (however many rows held them).",
            registry=r,
        )
        self.oldest_finished_age = Gauge(
            "tidings_worker_oldest_finished_job_age_seconds",
            "Age of the oldest finished job still stored (0: none), as of the last prune.",
            registry=r,
        )
        self.oldest_finished_age.set_function(self._oldest_finished_age_s)
        # The oldest age the last pass read, and when (monotonic): the gauge keeps ageing
        # it between passes by this process's clock, not by comparing with Postgres' clock.
        self._oldest_seen: tuple[float, float] | None = None

    def track(self, in_flight: Callable[[], int], heartbeat_age_s: Callable[[], float]) -> None:
        """Read the gauges from the runtime at scrape time."""
        self.jobs_in_flight.set_function(in_flight)
        self.heartbeat_age.set_function(heartbeat_age_s)

    def record_batch(self, events: int) -> None:
        self.events_written.inc(events)
        self.write_batch_size.observe(events)

    def record_pruned(self, jobs: Mapping[str, int], events: int) -> None:
        """Count what a pruning batch deleted."""
        for status, count in jobs.items():
            self.pruned_jobs.labels(status).inc(count)
        self.pruned_events.inc(events)

    def record_oldest_finished(self, age_s: float | None) -> None:
        """Remember the oldest finished job's age, as a pruning pass read it."""
        self._oldest_seen = None if age_s is None else (age_s, time.monotonic())

    def _oldest_finished_age_s(self) -> float:
        if self._oldest_seen is None:
            return 0.0
        age_s, seen_at = self._oldest_seen
        return age_s + time.monotonic() - seen_at

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve `/metrics` on a thread; returns the function that stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
