"""The result table: one row per measure, with its target and whether it was met."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.stats import median, percentile


@dataclass(frozen=True)
class Target:
    """What a measure must reach: bounds on the tidings value and on tidings / raw ARQ."""

    at_least: float | None = None
    at_most: float | None = None
    ratio_at_least: float | None = None

    def met(self, tidings: float | None, raw: float | None) -> bool | None:
        """None when there is nothing to judge (the measure did not run)."""
        if tidings is None or math.isnan(tidings):
            return None
        checks = []
        if self.at_least is not None:
            checks.append(tidings >= self.at_least)
        if self.at_most is not None:
            checks.append(tidings <= self.at_most)
        if self.ratio_at_least is not None and raw:
            checks.append(tidings / raw >= self.ratio_at_least)
        return all(checks)

    def text(self, unit: str) -> str:
        parts = []
        if self.at_least is not None:
            parts.append(f">= {number(self.at_least)}{unit_suffix(unit)}")
        if self.at_most is not None:
            parts.append(f"<= {number(self.at_most)}{unit_suffix(unit)}")
        if self.ratio_at_least is not None:
            parts.append(f">= {self.ratio_at_least:g}x raw")
        return ", ".join(parts)


@dataclass(frozen=True)
class Row:
    """One measure of one scenario; `reps` keeps the per-repetition values for the JSON."""

    scenario: str
    measure: str
    unit: str
    tidings: float | None
    raw_arq: float | None = None
    target: Target | None = None
    note: str = ""
    reps: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.tidings is None or not self.raw_arq:
            return None
        return self.tidings / self.raw_arq

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.met(self.tidings, self.raw_arq)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "unit": self.unit,
            "tidings": self.tidings,
            "raw_arq": self.raw_arq,
            "ratio": self.ratio,
            "target": self.target.text(self.unit) if self.target else None,
            "passed": self.passed,
            "note": self.note,
            "reps": self.reps,
        }


def failed_row(scenario: str, error: BaseException) -> Row:
    """The row a scenario leaves when it could not run to the end."""
    while isinstance(error, BaseExceptionGroup):  # a task group's: its first cause
        error = error.exceptions[0]
    return Row(scenario, "error", "", None, note=f"{type(error).__name__}: {error}"[:300])


def number(value: float) -> str:
    """A compact rendering: thousands separators for big values, 3 significant digits else."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def unit_suffix(unit: str) -> str:
    if not unit:
        return ""
    return unit if unit in ("x", "%") else f" {unit}"


def cell(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{number(value)}{unit_suffix(unit)}"


def verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[passed]


def table(rows: Sequence[Row]) -> str:
    """The rows as a fixed-width text table, notes listed below it."""
    header = ("scenario", "tidings", "raw ARQ", "ratio", "target", "result")
    lines = [
        (
            f"{row.scenario}: {row.measure}",
            cell(row.tidings, row.unit),
            cell(row.raw_arq, row.unit),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target.text(row.unit) if row.target else "-",
            verdict(row.passed),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(values: Sequence[str]) -> str:
        first, *rest = values
        cells = [first.ljust(widths[0])]
        cells += [value.rjust(width) for value, width in zip(rest, widths[1:], strict=True)]
        return " | ".join(cells).rstrip()

    out = [render(header), "-+-".join("-" * width for width in widths)]
    out += [render(line) for line in lines]
    notes = [f"  {row.scenario}: {row.measure}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def to_json(rows: Sequence[Row], meta: dict[str, Any]) -> bytes:
    """The run as JSON: metadata and the same rows as the table."""
    return orjson.dumps(
        {**meta, "rows": [row.as_json() for row in rows]}, option=orjson.OPT_INDENT_2
    )


def latency_rows(
    scenario: str,
    reps: Sequence[Sequence[float]],
    note: str,
    p50: Target | None,
    p99: Target | None,
) -> list[Row]:
    """The p50 and p99 rows of a latency scenario, from each repetition's samples (s)."""
    rows = []
    for name, q, target in (("p50", 50, p50), ("p99", 99, p99)):
        values = [percentile(samples, q) * 1000 for samples in reps]
        rows.append(
            Row(
                scenario,
                f"latency {name}",
                "ms",
                median(values),
                target=target,
                note=note if name == "p50" else "",
                reps={"tidings": values},
            )
        )
    return rows
