"""A batch file for `tidings batch submit`: JSON Lines, one job submission object a line.

Each object is what `POST /jobs` takes (`task`, `args`, `queue`, …), and may carry `ref`,
`depends_on` and `on_dependency_failure`. Blank lines are skipped. The whole file is read
and checked before anything is sent, so a bad line submits nothing; errors name the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class BadBatchFile(ValueError):
    """A line of the file is not a job; the message names the line."""


@dataclass(frozen=True)
class BatchFile:
    """The jobs of a batch file, and the line each came from (for the server's errors)."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def line_of(self, index: Any) -> int | None:
        """The line of the job at `index` (0-based, as the server counts), if there is one."""
        if isinstance(index, int) and 0 <= index < len(self.lines):
            return self.lines[index]
        return None


def read_batch_file(lines: Iterable[str]) -> BatchFile:
    """Parse the file's lines; raise `BadBatchFile` at the first that is not a job."""
    jobs: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        jobs.append(job_on_line(line, number))
        numbers.append(number)
    if not jobs:
        raise BadBatchFile("the file has no jobs (one JSON object a line)")
    return BatchFile(jobs, numbers)


def job_on_line(line: str, number: int) -> dict[str, Any]:
    """The job object on one line, checked as far as can be without the server."""
    try:
        job = json.loads(line)
    except ValueError as exc:
        raise BadBatchFile(f"line {number}: not JSON: {exc}") from None
    if not isinstance(job, dict):
        raise BadBatchFile(f"line {number}: a job must be a JSON object, not {_kind(job)}")
    task = job.get("task")
    if not isinstance(task, str) or not task:
        raise BadBatchFile(f'line {number}: a job needs "task", the task\'s name')
    if "args" in job and not isinstance(job["args"], dict):
        raise BadBatchFile(f'line {number}: "args" must be a JSON object')
    depends_on = job.get("depends_on")
    if depends_on is not None and not (
        isinstance(depends_on, list) and all(isinstance(item, str) for item in depends_on)
    ):
        raise BadBatchFile(f'line {number}: "depends_on" must be a list of job ids or refs')
    return job


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")
