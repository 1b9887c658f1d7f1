"""4. Progress events persisted per second by one worker, what each costs, and what
reporting costs a task that does real work.

`bench.tasks.progress_loop` calls `job.progress` in a tight loop; persisted/s is the
number of progress events over the time from the first one's `at` to the last one's, and
the CPU the worker and Postgres used during the run, divided by the events, is the cost
of one event. `bench.tasks.cpu_steps` does 100 us of CPU work per step (a stand-in for
producing an LLM token) and reports every step; the same task without reporting gives
the overhead ratio, each run timed from its `started` to its `succeeded` event (so the
reporting run includes writing its last events). The tight loop's ratio is shown too,
without a target: against a loop that does nothing, any storage costs many times over.
"""

from __future__ import annotations

import uuid

from bench.report import Row, Target
from bench.runner import Bench
from bench.stats import median

SCENARIO = "4 progress"
TARGET_RATE = Target(at_least=20_000)
TARGET_POSTGRES_US = Target(at_most=1.0)
TARGET_WORKER_US = Target(at_most=2.0)
TARGET_STEP_OVERHEAD = Target(at_most=1.05)
STEPS = 10_000
STEP_US = 100.0
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
    step_ratios: list[float] = []
    async with bench.services.worker() as worker:
        await loop_job(bench, WARMUP_EVENTS, report=True)
        while len(rates) < config.reps:
            before = await bench.cpu(worker.pid)
            job_id, run_s = await loop_job(bench, events, report=True)
            used = await bench.cpu(worker.pid) - before
            postgres_us.append(used.postgres_s * 1e6 / events)
            rates.append(await persisted_rate(bench, job_id, events))
            before = await bench.cpu(worker.pid)
            plain_id, plain_s = await loop_job(bench, events, report=False)
            plain = await bench.cpu(worker.pid) - before
            # What an event costs the worker: the reporting loop's CPU less the same loop's
            # without reporting (its sleep(0) per step is the task's, not the event's).
            worker_us.append((used.process_s - plain.process_s) * 1e6 / events)
            with_report.append(run_s)
            without.append(plain_s)
            ratios.append(run_s / plain_s)
            loops_s = [(await bench.jobs.result(i))["loop_s"] for i in (job_id, plain_id)]
            in_task.append(loops_s[0] / loops_s[1])
            steps_reporting = await steps_job(bench, report=True)
            steps_plain = await steps_job(bench, report=False)
            step_ratios.append(steps_reporting / steps_plain)
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
            note=f"{events:,} job.progress calls in a tight loop, {repeated}",
            reps={"tidings": rates},
        ),
        Row(
            SCENARIO,
            "Postgres CPU per event",
            "us",
            median(postgres_us),
            target=TARGET_POSTGRES_US,
            note="the same runs: CPU of the run's Postgres backends over the events",
            reps={"tidings": postgres_us},
        ),
        Row(
            SCENARIO,
            "worker CPU per event",
            "us",
            median(worker_us),
            target=TARGET_WORKER_US,
            note="the same runs: the worker's CPU less the same loop's without reporting",
            reps={"tidings": worker_us},
        ),
        Row(
            SCENARIO,
            f"{STEP_US:.0f} us steps, reporting / not",
            "x",
            median(step_ratios),
            target=TARGET_STEP_OVERHEAD,
            note=f"{STEPS:,} steps of {STEP_US:.0f} us CPU work, each reported (or not)",
            reps={"tidings": step_ratios},
        ),
        Row(
            SCENARIO,
            "tight loop, reporting / not",
            "x",
            median(ratios),
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


async def steps_job(bench: Bench, *, report: bool) -> float:
    """Run one `cpu_steps` job to the end: its started -> succeeded time."""
    args = {"count": STEPS, "step_us": STEP_US, "report": report}
    job_id = await bench.jobs.submit("cpu_steps", args)
    await bench.jobs.wait_finished([job_id], within_s=120)
    return await bench.jobs.run_time(job_id)


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
