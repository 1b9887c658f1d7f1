"""Retention's pieces that need no database: settings, `@task(retain_s=…)`, the policy, metrics."""

from __future__ import annotations

import pytest

from tidings.core.settings import Settings, SettingsError
from tidings.worker import Job, task
from tidings.worker.metrics import WorkerMetrics
from tidings.worker.registry import SPEC_ATTRIBUTE, TaskSpec
from tidings.worker.retention import Retention
from tidings.worker.schema import TaskSignatureError

DAY_S = 86_400


def test_finished_jobs_are_kept_a_week_or_a_month_by_default() -> None:
    settings = Settings.from_env({})
    assert Retention.from_settings(settings).by_status == {
        "succeeded": 7 * DAY_S,
        "failed": 30 * DAY_S,
        "cancelled": 30 * DAY_S,
    }


def test_retentions_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"TIDINGS_RETAIN_SUCCEEDED_S": "60", "TIDINGS_RETAIN_FAILED_S": "120.5"}
    )
    assert Retention.from_settings(settings) == Retention(60.0, 120.5, 30 * DAY_S)


@pytest.mark.parametrize(
    "name",
    [
        "RETAIN_SUCCEEDED_S",
        "RETAIN_FAILED_S",
        "RETAIN_CANCELLED_S",
        "PRUNE_PERIOD_S",
        "PRUNE_BATCH_JOBS",
        "PRUNE_BATCH_EVENTS",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_retention_settings_must_be_positive(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"PRUNE|{name}"):
        Settings.from_env({f"TIDINGS_{name}": value})


def test_a_tasks_retain_s_reaches_its_registry_row() -> None:
    @task(retain_s=90)
    async def kept_briefly(job: Job) -> None: ...

    @task
    async def kept_as_its_status_says(job: Job) -> None: ...

    spec: TaskSpec = getattr(kept_briefly, SPEC_ATTRIBUTE)
    assert spec.registry_row()["defaults"]["retain_s"] == 90.0
    other: TaskSpec = getattr(kept_as_its_status_says, SPEC_ATTRIBUTE)
    assert other.registry_row()["defaults"]["retain_s"] is None


@pytest.mark.parametrize("retain_s", [0, -5])
def test_a_tasks_retain_s_must_be_positive(retain_s: float) -> None:
    with pytest.raises(TaskSignatureError, match="retain_s"):

        @task(retain_s=retain_s)
        async def never_kept(job: Job) -> None: ...


def test_the_worker_counts_what_it_pruned_and_ages_the_oldest_job() -> None:
    metrics = WorkerMetrics()

    def value(name: str, **labels: str) -> float:
        found = metrics.registry.get_sample_value(name, labels)
        assert found is not None
        return found

    metrics.record_pruned({"succeeded": 3, "failed": 1}, 40)
    metrics.record_pruned({"succeeded": 2}, 10)
    assert value("tidings_worker_pruned_jobs_total", status="succeeded") == 5
    assert value("tidings_worker_pruned_jobs_total", status="failed") == 1
    assert value("tidings_worker_pruned_events_total") == 50

    assert value("tidings_worker_oldest_finished_job_age_seconds") == 0
    metrics.record_oldest_finished(100.0)
    first = value("tidings_worker_oldest_finished_job_age_seconds")
    # Between passes the gauge keeps ageing by this process's clock.
    assert 100.0 <= first <= value("tidings_worker_oldest_finished_job_age_seconds")
    metrics.record_oldest_finished(None)
    assert value("tidings_worker_oldest_finished_job_age_seconds") == 0
