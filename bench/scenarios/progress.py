"""4. Progress events persisted per second by one worker, and what reporting costs a task.

`bench.tasks.progress_loop` calls `job.progress` in a tight loop; persisted/s is the
number of progress rows over the time from the first row's `at` to the last one's. The
same loop without reporting gives the overhead ratio; each run is timed from its
`started` to its `succeeded` event, so the reporting run includes draining its backlog
(the target is judged on that). The loop's own time, as the task measured it, is shown
beside it: what reporting costs the task's code while its events are still being written.
"""

from __future__ import annotations

import uuid

from bench.report import Row, Target
from bench.runner import Bench
from bench.stats import median

SCENARIO = "4 progress"
TARGET_RATE = Target(at_least=20_000)
TARGET_OVERHEAD = Target(at_most=1.5)
WARMUP_EVENTS = 2_000
# A reporting run slower than this is not repeated, or the bench would overrun 10 minutes.
REPEAT_WITHIN_S = 20.0


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    events = config.progress_events
    rates: list[float] = []
    ratios: list[float] = []
    with_report: list[float] = []
    without: list[float] = []
    in_task: list[float] = []
    worker_us: list[float] = []
    postgres_us: list[float] = []
    async with bench.services.worker() as worker:
        await loop_job(bench, WARMUP_EVENTS, report=True)
        while len(rates) < config.reps:
            before = await bench.cpu(worker.pid)
            job_id, run_s = await loop_job(bench, events, report=True)
            used = await bench.cpu(worker.pid) - before
            worker_us.append(used.process_s * 1e6 / events)
            postgres_us.append(used.postgres_s * 1e6 / events)
            rates.append(await persisted_rate(bench, job_id, events))
            plain_id, plain_s = await loop_job(bench, events, report=False)
            with_report.append(run_s)
            without.append(plain_s)
            ratios.append(run_s / plain_s)
            loops_s = [(await bench.jobs.result(i))["loop_s"] for i in (job_id, plain_id)]
            in_task.append(loops_s[0] / loops_s[1])
            if run_s > REPEAT_WITHIN_S:
                break
    repeated = f"median of {len(rates)}"
    if len(rates) < config.reps:
        repeated += f" (a run took {with_report[-1]:.0f}s: not repeated, to stay in 10 minutes)"
    loops = (
        f"{events:,} steps: {median(with_report):.2f}s reporting, "
        f"{median(without):.2f}s without (each step awaits sleep(0))"
    )
    return [
        Row(
            SCENARIO,
            "events persisted/s, 1 worker",
            "/s",
            median(rates),
            target=TARGET_RATE,
            note=(
                f"{events:,} job.progress calls in a tight loop, {repeated}; CPU per event: "
                f"worker {median(worker_us):.0f} us + Postgres {median(postgres_us):.0f} us"
            ),
            reps={"tidings": rates, "worker_cpu_us": worker_us, "postgres_cpu_us": postgres_us},
        ),
        Row(
            SCENARIO,
            "loop time, reporting / not",
            "x",
            median(ratios),
            target=TARGET_OVERHEAD,
            note=loops,
            reps={"tidings": ratios, "reporting_s": with_report, "plain_s": without},
        ),
        Row(
            SCENARIO,
            "loop time in the task, reporting / not",
            "x",
            median(in_task),
            note="the same runs, timed by the task itself: its loop, not its events' writing",
            reps={"tidings": in_task},
        ),
    ]


async def persisted_rate(bench: Bench, job_id: uuid.UUID, expected: int) -> float:
    """Progress rows per second, first to last; every reported event must be there."""
    persisted, span_s = await bench.jobs.progress(job_id)
    if persisted != expected:
        raise RuntimeError(f"{persisted} of {expected} progress events persisted")
    return persisted / span_s


async def loop_job(bench: Bench, count: int, *, report: bool) -> tuple[uuid.UUID, float]:
    """Run one `progress_loop` job to the end: its id and its started -> succeeded time."""
    job_id = await bench.jobs.submit("progress_loop", {"count": count, "report": report})
    await bench.jobs.wait_finished([job_id], within_s=120)
    return job_id, await bench.jobs.run_time(job_id)
