"""Prometheus metrics of a worker process, served on `TIDINGS_WORKER_METRICS_PORT`."""

from __future__ import annotations

from collections.abc import Callable
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

    def track(self, in_flight: Callable[[], int], heartbeat_age_s: Callable[[], float]) -> None:
        """Read the gauges from the runtime at scrape time."""
        self.jobs_in_flight.set_function(in_flight)
        self.heartbeat_age.set_function(heartbeat_age_s)

    def record_batch(self, events: int) -> None:
        self.events_written.inc(events)
        self.write_batch_size.observe(events)

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve `/metrics` on a thread; returns the function that stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
