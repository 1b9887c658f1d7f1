"""Concurrency-key templates, rate strings and the `@task` options that use them: what is
refused when the worker starts, and what a submission's keys render to."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.core.concurrency_keys import (
    KeyStrategy,
    KeyTemplate,
    KeyTemplateError,
    keyed_fields,
    scoped_key,
    unscoped_key,
)
from tidings.core.errors import Unprocessable
from tidings.core.rate_limits import RateLimitError, parse_rate
from tidings.worker import Job, task
from tidings.worker.registry import SPEC_ATTRIBUTE, TaskSpec
from tidings.worker.schema import TaskSignatureError


async def export(job: Job, customer_id: str, region: str = "eu") -> None:
    """A task function the options are tried on."""


def spec_of(**options: Any) -> TaskSpec:
    spec: TaskSpec = getattr(task(**options)(export), SPEC_ATTRIBUTE)
    return spec


@pytest.mark.parametrize(
    ("text", "count", "period_s"),
    [("60/minute", 60, 60.0), ("10/s", 10, 1.0), ("500/hour", 500, 3600.0), ("30/5s", 30, 5.0)],
)
def test_rate_strings_read_as_count_per_period(text: str, count: int, period_s: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period_s, rate.burst) == (count, period_s, count)


@pytest.mark.parametrize("text", ["60", "x/minute", "0/s", "5/fortnight", "5/0s", "", "-1/s"])
def test_malformed_rate_strings_are_refused(text: str) -> None:
    with pytest.raises(RateLimitError):
        parse_rate(text)


def test_a_template_renders_args_tenant_and_task() -> None:
    template = KeyTemplate("{task}:{tenant}:{args.customer.id}:{args.flag}")
    key = template.render(
        {"customer": {"id": 7}, "flag": True}, tenant="acme", task="export", field="key"
    )
    assert key == "export:acme:7:true"
    assert KeyTemplate("tenant").render({}, tenant="acme", task="t", field="key") == "acme"


@pytest.mark.parametrize("text", ["", "{args}", "{customer_id}", "{args.a", "a}", "{args.1x}"])
def test_unreadable_templates_are_refused(text: str) -> None:
    with pytest.raises(KeyTemplateError):
        KeyTemplate(text)


@pytest.mark.parametrize(
    ("args", "reason"),
    [({}, "missing"), ({"customer_id": None}, "missing"), ({"customer_id": [1]}, "not a string")],
)
def test_a_key_that_cannot_be_rendered_is_a_422(args: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unprocessable) as raised:
        KeyTemplate("{args.customer_id}").render(
            args, tenant="t", task="x", field="concurrency key"
        )
    assert reason in raised.value.message
    assert raised.value.details["field"] == "args.customer_id"


def test_concurrency_keys_are_scoped_to_the_tenant_and_rate_keys_are_not() -> None:
    defaults = {
        "concurrency_key": "{args.customer_id}",
        "max_per_key": 2,
        "key_strategy": "keep_latest",
        "fair": True,
        "rate_limit": "60/minute",
        "rate_key": "{args.region}",
    }
    fields = keyed_fields(
        defaults, {}, {"customer_id": "c1", "region": "eu"}, tenant="acme", task="export"
    )
    assert fields.concurrency_key == scoped_key("acme", "c1")
    assert unscoped_key(fields.concurrency_key) == "c1"
    assert (fields.max_per_key, fields.key_strategy, fields.fair_key) == (
        2,
        KeyStrategy.KEEP_LATEST,
        "c1",
    )
    assert (fields.rate_key, fields.rate_per_s, fields.rate_burst) == ("eu", 1.0, 60)
    mine = keyed_fields(
        defaults,
        {"concurrency_key": "own", "max_per_key": 5},
        {"customer_id": "c1", "region": "eu"},
        tenant="acme",
        task="export",
    )
    assert (mine.concurrency_key, mine.max_per_key) == (scoped_key("acme", "own"), 5)


def test_task_options_are_stored_for_the_server() -> None:
    spec = spec_of(concurrency_key="{args.customer_id}", rate_limit="10/s")
    assert spec.max_per_key == 1  # a key alone allows one at a time
    assert spec.defaults["concurrency_key"] == "{args.customer_id}"
    assert spec.defaults["key_strategy"] == "queue"
    assert spec.defaults["rate_limit"] == "10/s"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_key": "{args.customer}"}, "'customer', which is not an argument"),
        ({"concurrency_key": "{args.customer_id}", "max_per_key": 0}, "at least 1"),
        ({"max_per_key": 2}, "needs a concurrency_key"),
        ({"concurrency_key": "tenant", "key_strategy": "newest"}, "is not one of"),
        ({"key_strategy": "keep_latest"}, "needs a concurrency_key"),
        ({"fair": True}, "give one"),
        ({"rate_limit": "60 per minute"}, "cannot read rate limit"),
        ({"rate_key": "{args.region}"}, "needs a rate_limit"),
        ({"rate_limit": "1/s", "rate_key": "{args.zone}"}, "'zone', which is not an argument"),
    ],
)
def test_options_that_cannot_work_fail_when_the_worker_starts(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskSignatureError) as raised:
        spec_of(**options)
    assert message in str(raised.value)
    assert str(raised.value).startswith("export:")
