"""Concurrency keys and rate keys: templates over a job's args, rendered at submit time.

A task declares `concurrency_key="{args.customer_id}"` (or `"tenant"`) with `max_per_key`:
at most that many of its jobs with the same rendered key run at once, cluster-wide (the
claim enforces it, migration 0009). A concurrency key is always scoped to the submitting
tenant, so one tenant can never take another's slots; a rate key is global unless its
template names the tenant, because a paid API's limit is shared by everyone who calls it.

A template is literal text with placeholders: `{args.name}` (or a nested `{args.a.b}`),
`{tenant}` and `{task}`; the bare word `tenant` means `{tenant}`. A placeholder must name a
scalar arg (string, number, boolean) that the submission has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tidings.core.errors import Unprocessable
from tidings.core.rate_limits import RateLimitError, parse_rate

# A rendered key is at most this long (it is an index entry and a label in views).
MAX_KEY = 500
# What separates the tenant from a concurrency key as stored: no printable text has it.
TENANT_SEPARATOR = "\x1f"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ARG_PATH = re.compile(r"^args(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class KeyStrategy(StrEnum):
    """What a submission does when its concurrency key is at its limit."""

    QUEUE = "queue"  # wait for a slot (the default)
    CANCEL_NEWEST = "cancel_newest"  # refuse the new job: 409 naming the key's jobs
    CANCEL_IN_PROGRESS = "cancel_in_progress"  # cancel the oldest of the key's jobs, run the new
    KEEP_LATEST = "keep_latest"  # cancel the key's waiting jobs: only the newest waits


class KeyTemplateError(ValueError):
    """A template that cannot be read."""


@dataclass(frozen=True)
class KeyTemplate:
    """A parsed template: its text and the arg paths it names."""

    text: str

    def __post_init__(self) -> None:
        if not self.text:
            raise KeyTemplateError("a key template cannot be empty")
        stripped = _PLACEHOLDER.sub("", self.text)
        if "{" in stripped or "}" in stripped:
            raise KeyTemplateError(f"key template {self.text!r} has an unmatched brace")
        for name in _PLACEHOLDER.findall(self.text):
            if name not in ("tenant", "task") and not _ARG_PATH.match(name):
                raise KeyTemplateError(
                    f"key template {self.text!r}: {{{name}}} is not {{args.<name>}}, "
                    "{tenant} or {task}"
                )

    @property
    def arg_names(self) -> list[str]:
        """The top-level args the template reads."""
        return [
            name.split(".")[1]
            for name in _PLACEHOLDER.findall(self.text)
            if name.startswith("args.")
        ]

    def check_args(self, known: Iterable[str]) -> None:
        """Raise unless every arg the template reads is one of `known` (a task's params)."""
        missing = [name for name in self.arg_names if name not in set(known)]
        if missing:
            raise KeyTemplateError(
                f"key template {self.text!r} names {missing[0]!r}, "
                "which is not an argument of the task"
            )

    def render(self, args: Mapping[str, Any], *, tenant: str, task: str, field: str) -> str:
        """The key for one submission; a 422 naming `field` when an arg is missing."""
        if self.text == "tenant":
            return tenant

        def value(match: re.Match[str]) -> str:
            name = match[1]
            if name == "tenant":
                return tenant
            if name == "task":
                return task
            current: Any = args
            for part in name.split(".")[1:]:
                if not isinstance(current, Mapping) or current.get(part) is None:
                    raise Unprocessable(
                        f"the {field} cannot be computed: args.{name[5:]} is missing",
                        {"field": f"args.{name[5:]}", "reason": f"{field} {self.text!r}"},
                        code="invalid_args",
                    )
                current = current[part]
            if isinstance(current, Mapping | list):
                raise Unprocessable(
                    f"the {field} cannot be computed: {name} is not a string or a number",
                    {"field": name, "reason": f"{field} {self.text!r}"},
                    code="invalid_args",
                )
            if isinstance(current, bool):
                return "true" if current else "false"
            return str(current)

        key = _PLACEHOLDER.sub(value, self.text)
        if len(key) > MAX_KEY:
            raise Unprocessable(
                f"the {field} is longer than {MAX_KEY} characters",
                {"field": field, "reason": f"{len(key)} characters"},
                code="invalid_args",
            )
        return key


@dataclass(frozen=True)
class KeyedFields:
    """The columns a submission's keys set on its job (see `jobs.NewJob`)."""

    concurrency_key: str | None = None
    max_per_key: int | None = None
    key_strategy: KeyStrategy = KeyStrategy.QUEUE
    fair_key: str = ""
    rate_key: str | None = None
    rate_per_s: float | None = None
    rate_burst: int | None = None

    @property
    def acts_at_submit(self) -> bool:
        """Whether the key's strategy decides when the job is submitted (all but `queue`)."""
        return self.concurrency_key is not None and self.key_strategy != KeyStrategy.QUEUE

    def columns(self) -> dict[str, Any]:
        """The job columns these set, by name (`jobs.NewJob`'s fields)."""
        return {
            "concurrency_key": self.concurrency_key,
            "max_per_key": self.max_per_key,
            "fair_key": self.fair_key,
            "rate_key": self.rate_key,
            "rate_per_s": self.rate_per_s,
            "rate_burst": self.rate_burst,
        }


def scoped_key(tenant: str, key: str) -> str:
    """A concurrency key as stored: within its tenant."""
    return f"{tenant}{TENANT_SEPARATOR}{key}"


def unscoped_key(stored: str) -> str:
    """The key as the tenant gave it (its stored form less the tenant)."""
    return stored.partition(TENANT_SEPARATOR)[2] or stored


def keyed_fields(
    defaults: Mapping[str, Any],
    body: Mapping[str, Any],
    args: Mapping[str, Any],
    *,
    tenant: str,
    task: str,
) -> KeyedFields:
    """A submission's keys: the task's templates rendered over `args`, or the submission's
    own `concurrency_key` / `max_per_key`; a 422 for anything that cannot be computed."""
    template = defaults.get("concurrency_key")
    key: str | None = None
    if "concurrency_key" in body:
        key = body["concurrency_key"]
    elif template:
        key = KeyTemplate(template).render(args, tenant=tenant, task=task, field="concurrency key")
    max_per_key = body.get("max_per_key", defaults.get("max_per_key"))
    if "max_per_key" in body and key is None:
        raise Unprocessable(
            "max_per_key needs a concurrency key",
            {"field": "body.max_per_key", "reason": f"task {task!r} declares no concurrency key"},
            code="invalid_request",
        )
    strategy = KeyStrategy(defaults.get("key_strategy") or KeyStrategy.QUEUE)
    rate_key = rate_per_s = rate_burst = None
    if defaults.get("rate_limit"):
        try:
            rate = parse_rate(defaults["rate_limit"])
        except RateLimitError as exc:  # a worker of another version registered it
            raise Unprocessable(
                str(exc), {"field": "task.rate_limit"}, code="invalid_task"
            ) from None
        rate_template = defaults.get("rate_key") or "{task}"
        rate_key = KeyTemplate(rate_template).render(
            args, tenant=tenant, task=task, field="rate key"
        )
        rate_per_s, rate_burst = rate.per_s, rate.burst
    if key is None:
        return KeyedFields(rate_key=rate_key, rate_per_s=rate_per_s, rate_burst=rate_burst)
    return KeyedFields(
        concurrency_key=scoped_key(tenant, key),
        max_per_key=int(max_per_key or 1),
        key_strategy=strategy,
        fair_key=key if defaults.get("fair") else "",
        rate_key=rate_key,
        rate_per_s=rate_per_s,
        rate_burst=rate_burst,
    )
