"""The args JSON schema derived from a task's type hints, and the `@task` registry."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Literal, Optional

import fastjsonschema
import pytest
from pydantic import BaseModel, ValidationError

from tidings.worker import Job, task
from tidings.worker.registry import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, TaskRegistry, TaskSpec
from tidings.worker.runtime import task_kwargs
from tidings.worker.schema import INT_MAX, INT_MIN, TaskSignatureError
from tidings.worker.tasks import examples

# Every integer argument is bounded to what JSON carries through tidings (64 bits).
INT_BOUNDS = {"minimum": INT_MIN, "maximum": INT_MAX}


class Point(BaseModel):
    x: int
    y: float = 0.0


def spec_of(fn: Any) -> TaskSpec:
    spec = getattr(fn, "__tidings_task__", None)
    assert isinstance(spec, TaskSpec)
    return spec


def properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The schema's properties without pydantic's cosmetic titles."""
    return {
        name: {key: value for key, value in prop.items() if key != "title"}
        for name, prop in schema["properties"].items()
    }


@task
async def typed(
    job: Job,
    count: int,
    ratio: float = 0.5,
    label: str = "x",
    tags: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    limit: Optional[int] = None,  # noqa: UP045 - the spelling under test
    point: Point | None = None,
    mode: Literal["fast", "slow"] = "fast",
) -> None:
    """Exercise every supported argument type."""


# --- schema shape -------------------------------------------------------------------------


def test_required_are_the_params_without_defaults() -> None:
    schema = spec_of(typed).schema
    assert schema["required"] == ["count"]
    assert set(schema["properties"]) == {
        "count",
        "ratio",
        "label",
        "tags",
        "meta",
        "limit",
        "point",
        "mode",
    }


def test_job_param_is_not_an_argument() -> None:
    assert "job" not in spec_of(typed).schema["properties"]


def test_schema_is_a_closed_object() -> None:
    schema = spec_of(typed).schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False


def test_scalar_types_and_defaults() -> None:
    props = properties(spec_of(typed).schema)
    assert props["count"] == {"type": "integer", **INT_BOUNDS}
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert props["label"] == {"type": "string", "default": "x"}


def test_container_and_optional_types() -> None:
    props = properties(spec_of(typed).schema)
    assert props["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
        "default": None,
    }
    assert props["meta"]["anyOf"][0]["type"] == "object"
    assert props["meta"]["anyOf"][1] == {"type": "null"}
    assert props["limit"] == {
        "anyOf": [{"type": "integer", **INT_BOUNDS}, {"type": "null"}],
        "default": None,
    }


def test_literal_is_an_enum() -> None:
    props = properties(spec_of(typed).schema)
    assert props["mode"]["enum"] == ["fast", "slow"]
    assert props["mode"]["default"] == "fast"


def test_nested_model_is_a_ref_into_defs() -> None:
    schema = spec_of(typed).schema
    assert schema["properties"]["point"]["anyOf"] == [
        {"$ref": "#/$defs/Point"},
        {"type": "null"},
    ]
    point = schema["$defs"]["Point"]
    assert point["required"] == ["x"]
    assert point["properties"]["x"]["type"] == "integer"


def test_unannotated_param_accepts_anything() -> None:
    @task
    async def loose(job: Job, anything, other=3) -> None:  # type: ignore[no-untyped-def]
        """Parameters without hints."""

    schema = spec_of(loose).schema
    assert schema["required"] == ["anything"]
    assert properties(schema) == {"anything": {}, "other": {"default": 3}}


def test_task_without_args_has_an_empty_closed_schema() -> None:
    schema = spec_of(examples.noop).schema
    assert schema["properties"] == {}
    assert schema["additionalProperties"] is False
    assert "required" not in schema


def test_schema_compiles_for_the_server_and_resolves_nested_refs() -> None:
    """The server validates with fastjsonschema; the derived schema must work there."""
    validate = fastjsonschema.compile(spec_of(typed).schema)
    validate({"count": 1, "point": {"x": 1, "y": 2.5}, "tags": ["a"], "mode": "slow"})
    rejected = [
        {},
        {"count": "1"},
        {"count": 1, "unknown": True},
        {"count": 1, "tags": [1]},
        {"count": 1, "point": {"x": "one"}},
        {"count": 1, "point": {"y": 1.0}},
        {"count": 1, "mode": "medium"},
    ]
    for args in rejected:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate(args)


# --- what the decorator rejects -------------------------------------------------------------


def test_rejects_a_sync_function() -> None:
    def sync(job: Job) -> None:
        """Not a coroutine function."""

    with pytest.raises(TaskSignatureError, match="async"):
        task(sync)  # type: ignore[arg-type]


def test_rejects_an_async_generator() -> None:
    async def gen(job: Job):  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TaskSignatureError, match="async"):
        task(gen)


def test_rejects_var_positional_args() -> None:
    async def star(job: Job, *items: int) -> None: ...

    with pytest.raises(TaskSignatureError, match="items"):
        task(star)


def test_rejects_var_keyword_args() -> None:
    async def kw(job: Job, **options: int) -> None: ...

    with pytest.raises(TaskSignatureError, match="options"):
        task(kw)


def test_rejects_positional_only_args_after_job() -> None:
    async def positional(job: Job, n: int, /) -> None: ...

    with pytest.raises(TaskSignatureError, match="'n'"):
        task(positional)


def test_rejects_a_function_without_a_job_param() -> None:
    async def nothing() -> None: ...

    with pytest.raises(TaskSignatureError, match="job"):
        task(nothing)


def test_rejects_a_function_whose_only_params_are_variadic() -> None:
    """The runtime calls `fn(job, **kwargs)`: there must be a positional slot for `job`."""

    async def only_kwargs(**kwargs: Any) -> None: ...

    async def only_args(*args: Any) -> None: ...

    for fn in (only_kwargs, only_args):
        with pytest.raises(TaskSignatureError, match="job"):
            task(fn)


def test_rejects_a_keyword_only_job() -> None:
    async def keyword_job(*, job: Job) -> None: ...

    with pytest.raises(TaskSignatureError, match="job"):
        task(keyword_job)


def test_keyword_only_args_after_job_are_allowed() -> None:
    @task
    async def keyword(job: Job, *, n: int) -> None: ...

    assert spec_of(keyword).schema["required"] == ["n"]


@pytest.mark.parametrize(("timeout", "max_attempts"), [(0, 1), (-1.0, 1), (1, 0)])
def test_rejects_impossible_limits(timeout: float, max_attempts: int) -> None:
    async def limited(job: Job) -> None: ...

    with pytest.raises(TaskSignatureError):
        task(timeout=timeout, max_attempts=max_attempts)(limited)


# --- the spec the decorator attaches --------------------------------------------------------


def test_bare_decorator_uses_defaults_and_returns_the_function() -> None:
    async def plain(job: Job) -> None:
        """First line.

        More detail that is not part of the description.
        """

    assert task(plain) is plain
    spec = spec_of(plain)
    assert spec.name == "plain"
    assert spec.fn is plain
    assert spec.queue == "default"
    assert spec.timeout_s == DEFAULT_TIMEOUT_S
    assert spec.max_attempts == DEFAULT_MAX_ATTEMPTS
    assert spec.description == "First line."


def test_decorator_options_are_recorded() -> None:
    @task(name="renamed", queue="slow", timeout=5, max_attempts=7)
    async def original(job: Job) -> None: ...

    spec = spec_of(original)
    assert (spec.name, spec.queue, spec.max_attempts, spec.description) == (
        "renamed",
        "slow",
        7,
        "",
    )
    assert spec.timeout_s == 5.0
    assert isinstance(spec.timeout_s, float)
    assert spec.defaults["timeout_s"] == 5.0
    assert spec.defaults["max_attempts"] == 7


# --- the shipped example tasks --------------------------------------------------------------


def test_examples_registry() -> None:
    registry = TaskRegistry.from_modules(["tidings.worker.tasks.examples"])
    assert {spec.name for spec in registry} == {"sleep_steps", "noop", "fail", "flaky"}
    assert len(registry) == 4
    assert registry.get("missing") is None


def test_example_sleep_steps_schema() -> None:
    spec = spec_of(examples.sleep_steps)
    assert properties(spec.schema) == {
        "steps": {"type": "integer", "default": 10, **INT_BOUNDS},
        "delay_s": {"type": "number", "default": 0.5},
    }
    assert "required" not in spec.schema
    assert spec.defaults["timeout_s"] == 600.0
    assert spec.defaults["max_attempts"] == DEFAULT_MAX_ATTEMPTS


def test_example_fail_and_flaky_schemas() -> None:
    assert properties(spec_of(examples.fail).schema) == {
        "message": {"type": "string", "default": "failed on purpose"}
    }
    flaky = spec_of(examples.flaky)
    assert properties(flaky.schema) == {
        "fail_times": {"type": "integer", "default": 1, **INT_BOUNDS}
    }
    assert flaky.max_attempts == 5


def test_registry_row_is_what_the_tasks_table_stores() -> None:
    spec = spec_of(examples.sleep_steps)
    row = spec.registry_row()
    name, queue, schema, defaults, description = (
        row[column] for column in ("name", "queue", "args_schema", "defaults", "description")
    )
    assert (name, queue) == ("sleep_steps", "default")
    assert schema == spec.schema
    assert defaults == {
        "timeout_s": 600.0,
        "max_attempts": DEFAULT_MAX_ATTEMPTS,
        "retry": {"base_s": 1.0, "factor": 2.0, "cap_s": 300.0, "jitter": True},
        "no_retry": [],
        "max_concurrency": None,
        "cache_ttl_s": None,
        "cron": None,
        "retain_s": None,
        "concurrency_key": None,
        "max_per_key": None,
        "key_strategy": "queue",
        "fair": False,
        "rate_limit": None,
        "rate_key": None,
    }
    assert description.startswith("Sleep `steps` times")


# --- building a registry from modules -------------------------------------------------------


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install an importable module holding the given attributes."""

    def install(name: str, **attributes: Any) -> str:
        module = ModuleType(name)
        vars(module).update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
        return name

    return install


def test_duplicate_task_names_are_rejected(fake_module: Any) -> None:
    @task(name="noop")
    async def impostor(job: Job) -> None: ...

    module = fake_module("tidings_test_impostor", impostor=impostor)
    with pytest.raises(TaskSignatureError, match="'noop'"):
        TaskRegistry.from_modules(["tidings.worker.tasks.examples", module])


def test_the_same_task_imported_twice_is_one_task(fake_module: Any) -> None:
    module = fake_module("tidings_test_reexport", noop=examples.noop, alias=examples.noop)
    registry = TaskRegistry.from_modules(["tidings.worker.tasks.examples", module])
    assert len(registry) == 4
    assert registry.get("noop") is spec_of(examples.noop)


def test_undecorated_functions_are_not_tasks(fake_module: Any) -> None:
    async def helper(job: Job) -> None: ...

    module = fake_module("tidings_test_helpers", helper=helper, typed=typed)
    assert [spec.name for spec in TaskRegistry.from_modules([module])] == ["typed"]


# --- converting stored JSON args into keyword arguments -------------------------------------


def test_task_kwargs_fill_defaults() -> None:
    kwargs = task_kwargs(spec_of(examples.sleep_steps), {"steps": 3})
    assert kwargs == {"steps": 3, "delay_s": 0.5}


def test_task_kwargs_convert_json_values_to_the_hinted_types() -> None:
    kwargs = task_kwargs(
        spec_of(typed),
        {"count": 2, "ratio": 1, "tags": ["a", "b"], "point": {"x": 1}, "mode": "slow"},
    )
    assert kwargs["count"] == 2
    assert kwargs["ratio"] == 1.0
    assert isinstance(kwargs["ratio"], float)
    assert kwargs["tags"] == ["a", "b"]
    assert kwargs["point"] == Point(x=1, y=0.0)
    assert kwargs["mode"] == "slow"
    assert kwargs["limit"] is None


@pytest.mark.parametrize(
    "args",
    [{}, {"count": "many"}, {"count": 1, "unknown": 1}, {"count": 1, "mode": "medium"}],
)
def test_task_kwargs_reject_args_that_do_not_fit(args: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        task_kwargs(spec_of(typed), args)
