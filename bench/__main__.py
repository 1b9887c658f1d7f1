"""`python -m bench [--quick] [--only NAME ...]`: run the scenarios, print the table, save JSON."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.backing import ENV_DATABASE_URL, ENV_REDIS_URL
from bench.config import REPO_ROOT, BenchConfig
from bench.probes import raise_fd_limit
from bench.report import Row, table, to_json
from bench.runner import open_bench, progress, run_scenarios
from bench.scenarios import SCENARIOS
from tidings.core.logging import configure_logging
from tidings.core.settings import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--reps", type=int, help="repetitions per scenario")
    parser.add_argument("--streams", type=int, help="SSE streams to open in sse-scale")
    parser.add_argument("--concurrency", type=int, help="max_jobs of both workers")
    parser.add_argument("--poll-delay", type=float, help="poll_delay of both workers (s)")
    parser.add_argument(
        "--raw-poll-delay", type=float, help="raw ARQ's poll_delay (s; default 0.01)"
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON results")
    return parser.parse_args(argv)


def config_from(options: argparse.Namespace) -> BenchConfig:
    config = BenchConfig()
    if options.quick:
        config = config.quick()
    overrides: dict[str, Any] = {
        "reps": options.reps,
        "sse_streams": options.streams,
        "concurrency": options.concurrency,
        "poll_delay_s": options.poll_delay,
        "raw_poll_delay_s": options.raw_poll_delay,
    }
    return replace(config, **{key: value for key, value in overrides.items() if value is not None})


def selected(only: list[str]) -> list[str]:
    names = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return names or list(SCENARIOS)


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{'+dirty' if dirty else ''}"


async def run(config: BenchConfig, names: list[str]) -> tuple[list[Row], dict[str, Any]]:
    async with open_bench(config, os.environ) as bench:
        rows = await run_scenarios(bench, [(name, SCENARIOS[name]) for name in names])
        backing = {
            "postgres": "url" if os.environ.get(ENV_DATABASE_URL) else "embedded",
            "redis": "url" if os.environ.get(ENV_REDIS_URL) else "embedded",
            "fresh_database": bench.backing.fresh_database,
        }
    return rows, backing


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    config = config_from(options)
    names = selected(options.only)
    # The bench's own Submitter logs every job it creates; only warnings are of interest.
    configure_logging(Settings(log_level="warning", log_format="console"))
    fd_limit = raise_fd_limit()
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    load_before = os.getloadavg()
    rows, backing = asyncio.run(run(config, names))
    load_after = os.getloadavg()
    meta = {
        "started_at": started_at.isoformat(),
        "duration_s": round(time.monotonic() - clock, 1),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "fd_limit": fd_limit,
            # Other processes on the machine skew every figure; the load says how much.
            "load_avg_1m": {"before": load_before[0], "after": load_after[0]},
        },
        "revision": git_revision(),
        "backing": backing,
        "scenarios": names,
        "config": config.as_json(),
    }
    print(table(rows))
    print(
        f"\n{os.cpu_count()} cores (1-min load {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after), revision {meta['revision']}, "
        f"{meta['duration_s']:.0f}s, logs in {config.results_dir / 'logs'}"
    )
    output = options.output or config.results_dir / "latest.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(to_json(rows, meta))
    progress(f"results written to {output}")
    if any(row.measure == "error" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
