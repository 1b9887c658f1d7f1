"""The `@task` decorator, worker hooks, and the registry of a worker's tasks.

The decorators only attach a spec to the function; a `TaskRegistry` is built by scanning
the modules named in the settings, so there is no module-level registry.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, overload

from croniter import croniter
from pydantic import BaseModel

from tidings.core.concurrency_keys import KeyStrategy, KeyTemplate, KeyTemplateError
from tidings.core.rate_limits import RateLimitError, parse_rate
from tidings.core.settings import QUEUE_PATTERN, QUEUE_RULE
from tidings.worker.retry import RetryPolicy
from tidings.worker.schema import TaskSignatureError, args_model, args_schema

SPEC_ATTRIBUTE = "__tidings_task__"
HOOK_ATTRIBUTE = "__tidings_hook__"
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_ATTEMPTS = 3

TaskFunction = Callable[..., Coroutine[Any, Any, Any]]
Hook = Callable[[dict[str, Any]], Awaitable[None]]
HookPhase = Literal["startup", "shutdown"]


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    no_retry: tuple[type[BaseException], ...] = ()
    max_concurrency: int | None = None
    cache_ttl_s: float | None = None
    cron: str | None = None
    cron_catch_up: bool = False
    retain_s: float | None = None
    concurrency_key: str | None = None
    max_per_key: int | None = None
    key_strategy: KeyStrategy = KeyStrategy.QUEUE
    fair: bool = False
    rate_limit: str | None = None
    rate_key: str | None = None

    @property
    def schema(self) -> dict[str, Any]:
        return args_schema(self.model)

    @property
    def defaults(self) -> dict[str, Any]:
        """What the server needs to know of the task beyond its args schema."""
        return {
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "retry": self.retry.as_json(),
            "no_retry": [exc.__name__ for exc in self.no_retry],
            "max_concurrency": self.max_concurrency,
            "cache_ttl_s": self.cache_ttl_s,
            "cron": self.cron,
            # Read by the pruner in SQL (`core/db/retention.py`): None keeps the status's.
            "retain_s": self.retain_s,
            # Rendered over each submission's args by the server (`core/concurrency_keys.py`).
            "concurrency_key": self.concurrency_key,
            "max_per_key": self.max_per_key,
            "key_strategy": str(self.key_strategy),
            "fair": self.fair,
            "rate_limit": self.rate_limit,
            "rate_key": self.rate_key,
        }

    def registry_row(self) -> dict[str, Any]:
        """The row upserted into `tasks`, by column."""
        return {
            "name": self.name,
            "queue": self.queue,
            "args_schema": self.schema,
            "defaults": self.defaults,
            "description": self.description,
        }


@overload
def task(fn: TaskFunction, /) -> TaskFunction: ...


@overload
def task(
    *,
    name: str | None = None,
    queue: str = "default",
    timeout: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    retry: RetryPolicy | None = None,
    no_retry: tuple[type[BaseException], ...] = (),
    max_concurrency: int | None = None,
    cache_ttl: float | None = None,
    cron: str | None = None,
    cron_catch_up: bool = False,
    retain_s: float | None = None,
    concurrency_key: str | None = None,
    max_per_key: int | None = None,
    key_strategy: str = "queue",
    fair: bool = False,
    rate_limit: str | None = None,
    rate_key: str | None = None,
) -> Callable[[TaskFunction], TaskFunction]: ...


def task(
    fn: TaskFunction | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    timeout: float = DEFAULT_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    retry: RetryPolicy | None = None,
    no_retry: tuple[type[BaseException], ...] = (),
    max_concurrency: int | None = None,
    cache_ttl: float | None = None,
    cron: str | None = None,
    cron_catch_up: bool = False,
    retain_s: float | None = None,
    concurrency_key: str | None = None,
    max_per_key: int | None = None,
    key_strategy: str = "queue",
    fair: bool = False,
    rate_limit: str | None = None,
    rate_key: str | None = None,
) -> TaskFunction | Callable[[TaskFunction], TaskFunction]:
    """Declare an async function as a task; its arguments after `job` become its JSON args.

    `concurrency_key` (a template such as `"{args.customer_id}"`, or `"tenant"`) with
    `max_per_key` bounds how many of its jobs with one key run at once; `key_strategy` says
    what a submission does when its key is full (`queue`, `cancel_newest`,
    `cancel_in_progress`, `keep_latest`); `fair=True` takes turns across keys as well as
    tenants. `rate_limit="60/minute"` with `rate_key` (a template; the task name by
    default) bounds how often its jobs start, across all workers.
    """

    def decorate(fn: TaskFunction) -> TaskFunction:
        if not inspect.iscoroutinefunction(fn):
            raise TaskSignatureError(f"{fn.__name__}: a task must be an async function")
        if not re.match(QUEUE_PATTERN, queue):
            raise TaskSignatureError(
                f"{fn.__name__}: queue {queue!r} is not a queue name ({QUEUE_RULE})"
            )
        if timeout <= 0 or max_attempts < 1:
            raise TaskSignatureError(f"{fn.__name__}: timeout > 0 and max_attempts >= 1")
        if max_concurrency is not None and max_concurrency < 1:
            raise TaskSignatureError(f"{fn.__name__}: max_concurrency must be at least 1")
        if cache_ttl is not None and cache_ttl <= 0:
            raise TaskSignatureError(f"{fn.__name__}: cache_ttl must be positive")
        if retain_s is not None and retain_s <= 0:
            raise TaskSignatureError(f"{fn.__name__}: retain_s must be positive")
        if cron is not None and not croniter.is_valid(cron):
            raise TaskSignatureError(f"{fn.__name__}: {cron!r} is not a cron expression")
        model = args_model(fn)
        if cron is not None and model.model_json_schema().get("required"):
            raise TaskSignatureError(f"{fn.__name__}: a cron task cannot require arguments")
        strategy = _check_keys(
            fn.__name__,
            list(model.model_fields),
            concurrency_key=concurrency_key,
            max_per_key=max_per_key,
            key_strategy=key_strategy,
            fair=fair,
            rate_limit=rate_limit,
            rate_key=rate_key,
        )
        doc = inspect.getdoc(fn) or ""
        spec = TaskSpec(
            name=name or fn.__name__,
            fn=fn,
            queue=queue,
            timeout_s=float(timeout),
            max_attempts=max_attempts,
            description=doc.splitlines()[0] if doc else "",
            model=model,
            retry=retry or RetryPolicy(),
            no_retry=tuple(no_retry),
            max_concurrency=max_concurrency,
            cache_ttl_s=None if cache_ttl is None else float(cache_ttl),
            cron=cron,
            cron_catch_up=cron_catch_up,
            retain_s=None if retain_s is None else float(retain_s),
            concurrency_key=concurrency_key,
            max_per_key=max_per_key if max_per_key is not None or not concurrency_key else 1,
            key_strategy=strategy,
            fair=fair,
            rate_limit=rate_limit,
            rate_key=rate_key,
        )
        setattr(fn, SPEC_ATTRIBUTE, spec)
        return fn

    return decorate(fn) if fn is not None else decorate


def _check_keys(
    owner: str,
    params: list[str],
    *,
    concurrency_key: str | None,
    max_per_key: int | None,
    key_strategy: str,
    fair: bool,
    rate_limit: str | None,
    rate_key: str | None,
) -> KeyStrategy:
    """Refuse key and rate options that could not work, when the worker starts."""
    try:
        for template in (concurrency_key, rate_key):
            if template is not None:
                KeyTemplate(template).check_args(params)
    except KeyTemplateError as exc:
        raise TaskSignatureError(f"{owner}: {exc}") from None
    if max_per_key is not None and (isinstance(max_per_key, bool) or max_per_key < 1):
        raise TaskSignatureError(f"{owner}: max_per_key must be at least 1, got {max_per_key!r}")
    if max_per_key is not None and concurrency_key is None:
        raise TaskSignatureError(f"{owner}: max_per_key needs a concurrency_key")
    try:
        strategy = KeyStrategy(key_strategy)
    except ValueError:
        choices = ", ".join(KeyStrategy)
        raise TaskSignatureError(
            f"{owner}: key_strategy {key_strategy!r} is not one of {choices}"
        ) from None
    if strategy != KeyStrategy.QUEUE and concurrency_key is None:
        raise TaskSignatureError(f"{owner}: key_strategy {key_strategy!r} needs a concurrency_key")
    if fair and concurrency_key is None:
        raise TaskSignatureError(
            f"{owner}: fair=True takes turns across concurrency keys; give one"
        )
    if rate_key is not None and rate_limit is None:
        raise TaskSignatureError(f"{owner}: rate_key needs a rate_limit")
    if rate_limit is not None:
        try:
            parse_rate(rate_limit)
        except RateLimitError as exc:
            raise TaskSignatureError(f"{owner}: {exc}") from None
    return strategy


def on_startup(fn: Hook) -> Hook:
    """Run `fn(resources)` when a worker starts; tasks see `resources` as `job.resources`."""
    setattr(fn, HOOK_ATTRIBUTE, "startup")
    return fn


def on_shutdown(fn: Hook) -> Hook:
    """Run `fn(resources)` when a worker stops, after its last job, to close what startup opened."""
    setattr(fn, HOOK_ATTRIBUTE, "shutdown")
    return fn


class TaskRegistry:
    """The tasks and hooks one worker has, by name."""

    def __init__(
        self, specs: Iterable[TaskSpec], hooks: Iterable[tuple[HookPhase, Hook]] = ()
    ) -> None:
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.fn is not spec.fn:
                raise TaskSignatureError(f"two tasks are named {spec.name!r}")
            self._specs[spec.name] = spec
        self.hooks: dict[HookPhase, list[Hook]] = {"startup": [], "shutdown": []}
        for phase, hook in hooks:
            if hook not in self.hooks[phase]:
                self.hooks[phase].append(hook)

    @classmethod
    def from_modules(cls, module_names: Iterable[str]) -> TaskRegistry:
        """Import each module and collect its `@task` functions and worker hooks."""
        modules = [importlib.import_module(name) for name in module_names]
        return cls(
            (spec for module in modules for spec in _specs_in(module)),
            (hook for module in modules for hook in _hooks_in(module)),
        )

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    @property
    def concurrency_limits(self) -> dict[str, int]:
        """Cluster-wide running limits by task name, for the claim."""
        return {s.name: s.max_concurrency for s in self if s.max_concurrency is not None}

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def _specs_in(module: ModuleType) -> Iterator[TaskSpec]:
    for value in vars(module).values():
        spec = getattr(value, SPEC_ATTRIBUTE, None)
        if isinstance(spec, TaskSpec):
            yield spec


def _hooks_in(module: ModuleType) -> Iterator[tuple[HookPhase, Hook]]:
    for value in vars(module).values():
        phase = getattr(value, HOOK_ATTRIBUTE, None)
        if phase in ("startup", "shutdown"):
            yield phase, value
