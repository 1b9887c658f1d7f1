"""The `@task` decorator and the registry of a worker's tasks.

The decorator only attaches a `TaskSpec` to the function; a `TaskRegistry` is built by
scanning the modules named in the settings, so there is no module-level registry.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, overload

from pydantic import BaseModel

from worker.schema import TaskSignatureError, args_model, args_schema

SPEC_ATTRIBUTE = "__tidings_task__"
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_ATTEMPTS = 3

TaskFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A task as the runtime and the registry table see it."""

    name: str
    fn: TaskFunction
    queue: str
    timeout_s: float
    max_attempts: int
    description: str
    model: type[BaseModel]

    @property
    def schema(self) -> dict[str, Any]:
        return args_schema(self.model)

    @property
    def defaults(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "max_attempts": self.max_attempts}

    def registry_row(self) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
        """The row upserted into `tasks`."""
        return (self.name, self.queue, self.schema, self.defaults, self.description)


@overload
def task(fn: TaskFunction, /) -> TaskFunction: ...


@overload
def task(
    *,
    name: str | None = None,
    queue: str = "default",
    timeout: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Callable[[TaskFunction], TaskFunction]: ...


def task(
    fn: TaskFunction | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    timeout: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> TaskFunction | Callable[[TaskFunction], TaskFunction]:
    """Declare an async function as a task; its arguments after `job` become its JSON args."""

    def decorate(fn: TaskFunction) -> TaskFunction:
        if not inspect.iscoroutinefunction(fn):
            raise TaskSignatureError(f"{fn.__name__}: a task must be an async function")
        if timeout <= 0 or max_attempts < 1:
            raise TaskSignatureError(f"{fn.__name__}: timeout > 0 and max_attempts >= 1")
        doc = inspect.getdoc(fn) or ""
        spec = TaskSpec(
            name=name or fn.__name__,
            fn=fn,
            queue=queue,
            timeout_s=float(timeout),
            max_attempts=max_attempts,
            description=doc.splitlines()[0] if doc else "",
            model=args_model(fn),
        )
        setattr(fn, SPEC_ATTRIBUTE, spec)
        return fn

    return decorate(fn) if fn is not None else decorate


class TaskRegistry:
    """The tasks one worker can run, by name."""

    def __init__(self, specs: Iterable[TaskSpec]) -> None:
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.fn is not spec.fn:
                raise TaskSignatureError(f"two tasks are named {spec.name!r}")
            self._specs[spec.name] = spec

    @classmethod
    def from_modules(cls, module_names: Iterable[str]) -> TaskRegistry:
        """Import each module and collect the functions decorated with `@task`."""
        return cls(
            spec
            for module in map(importlib.import_module, module_names)
            for spec in _specs_in(module)
        )

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def _specs_in(module: ModuleType) -> Iterator[TaskSpec]:
    for value in vars(module).values():
        spec = getattr(value, SPEC_ATTRIBUTE, None)
        if isinstance(spec, TaskSpec):
            yield spec
