"""The cluster suite's table: what each scenario measured, printed at the end of a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ScenarioRow:
    scenario: str
    jobs: int
    jobs_per_s: float
    stall_s: float | None
    streams: int
    events_checked: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


HEADER = ("scenario", "jobs", "jobs/s", "stall", "streams", "events checked", "note")


def table(rows: list[ScenarioRow]) -> str:
    """A Markdown table, as docs/scaling.md shows it."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        stall = "-" if row.stall_s is None else f"{row.stall_s:.2f} s"
        cells = (
            row.scenario,
            f"{row.jobs:,}",
            f"{row.jobs_per_s:,.0f}",
            stall,
            f"{row.streams:,}",
            f"{row.events_checked:,}",
            row.note,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
