"""What one bench run measures: repetitions, counts, and the worker settings both sides share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tidings.core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DATA_DIR = REPO_ROOT / ".data" / "bench"


@dataclass(frozen=True)
class BenchConfig:
    """Counts and settings of a run; `quick()` is the same run, smaller, for development."""

    reps: int = 3
    # 1. noop throughput
    noop_jobs: int = 3_000
    warmup_jobs: int = 300
    # 2. submit -> started latency
    pickup_samples: int = 200
    pickup_gap_s: tuple[float, float] = (0.010, 0.030)
    # 3. idle Redis commands
    idle_window_s: float = 10.0
    idle_settle_s: float = 2.0
    # 4. progress events persisted
    progress_events: int = 100_000
    # 5. progress -> SSE latency
    paced_events: int = 200
    paced_interval_s: float = 0.010
    # 6. REST submit
    rest_jobs: int = 5_000
    rest_connections: int = 32
    # 7. SSE at scale (one repetition: opening the streams is the slow part)
    sse_streams: int = 10_000
    sse_open_parallel: int = 200
    sse_cancel_connections: int = 32
    # 8. cancel of a running job -> its `cancelled` event on the SSE stream
    cancel_samples: int = 30
    # Shared by the tidings worker and the raw ARQ worker (max_jobs, poll_delay).
    concurrency: int = Settings.concurrency
    poll_delay_s: float = Settings.poll_delay_s
    # Raw ARQ's poll_delay (None: tidings' own). tidings' poll is only a fallback behind its
    # wake-ups, so raw ARQ is given the fast 10 ms poll that makes it fastest here.
    raw_poll_delay_s: float | None = 0.01
    results_dir: Path = RESULTS_DIR
    data_dir: Path = DATA_DIR
    # Settings of the tidings processes that a run sets (the soak's short retention).
    settings_overrides: tuple[tuple[str, Any], ...] = ()

    def quick(self) -> BenchConfig:
        """Fewer repetitions and smaller counts: minutes become seconds."""
        return replace(
            self,
            reps=1,
            noop_jobs=1_000,
            warmup_jobs=100,
            pickup_samples=50,
            cancel_samples=10,
            idle_window_s=3.0,
            idle_settle_s=1.0,
            progress_events=20_000,
            paced_events=50,
            rest_jobs=1_000,
            sse_streams=1_000,
        )

    @property
    def raw_poll_s(self) -> float:
        """The poll_delay raw ARQ runs with."""
        return self.poll_delay_s if self.raw_poll_delay_s is None else self.raw_poll_delay_s

    def poll_note(self) -> str:
        """How both workers poll, for the notes of the comparable scenarios."""
        if self.raw_poll_s == self.poll_delay_s:
            return f"poll_delay {self.poll_delay_s:g}s on both"
        return f"poll_delay {self.poll_delay_s:g}s tidings, {self.raw_poll_s:g}s raw ARQ"

    def as_json(self) -> dict[str, Any]:
        return {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(self).items()
        }
