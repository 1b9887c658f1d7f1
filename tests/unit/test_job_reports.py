"""What `Job.progress` and `Job.log` refuse at the call, before anything is queued."""

from __future__ import annotations

import uuid

import pytest
import structlog

from tidings.core import serialization
from tidings.worker.job import Job
from tidings.worker.reporter import Reporter


@pytest.fixture
def reporter() -> Reporter:
    # Its writer never starts: these tests look only at what gets queued.
    return Reporter(None, None, None)  # type: ignore[arg-type]


@pytest.fixture
def job(reporter: Reporter) -> Job:
    return Job(
        id=uuid.uuid4(),
        task="t",
        attempt=1,
        queue="default",
        timeout_s=60,
        reporter=reporter,
        log=structlog.get_logger(),
    )


async def test_storable_progress_and_log_are_accepted(job: Job, reporter: Reporter) -> None:
    await job.progress(1, 2, "half way", rows=3, note="a \\u0000 as text is fine")
    await job.log("done", files=["a", "b"])
    assert reporter.pending_notes == 2


@pytest.mark.parametrize(
    ("message", "data", "error"),
    [
        ("nul \x00 in the message", {}, ValueError),
        ("ok", {"nested": ["nul \x00 in data"]}, ValueError),
        ("ok", {"not_json": object()}, TypeError),
        (42, {}, TypeError),
    ],
)
async def test_what_postgres_cannot_store_is_refused_in_the_task(
    job: Job,
    reporter: Reporter,
    message: object,
    data: dict[str, object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await job.progress(1, 2, message, **data)  # type: ignore[arg-type]
    with pytest.raises(error):
        await job.log(message, **data)  # type: ignore[arg-type]
    assert reporter.pending_notes == 0


def test_storable_tells_a_nul_character_from_its_escaped_text() -> None:
    serialization.storable({"text": "\\u0000", "also": "\\\\u0000"})  # accepted: no error
    for value in ("\x00", ["a", {"b": "c\x00"}], "\\\x00"):
        with pytest.raises(ValueError):
            serialization.storable(value)
