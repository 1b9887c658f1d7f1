"""What each API method sends and how its answer is read, with no I/O (a sans-IO core).

`AsyncClient` and `Client` each send a `Call` their own way and hand the decoded JSON body
to `Call.read`; so a method's path, parameters and result type are written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from typing_extensions import Unpack

from tidings.client.job_filters import JobFilters, filter_values
from tidings.client.models import Event, Job, JobPage, JobSpec, QueueInfo, TaskInfo, WorkerInfo

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the API, and how to turn its JSON answer into what the method returns."""

    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, str] | None = None


def job_path(job_id: str, suffix: str = "") -> str:
    """`/jobs/{id}{suffix}`, with the id escaped: a user's typo must not become another path."""
    return f"/jobs/{quote(str(job_id), safe='')}{suffix}"


def merged_args(args: Mapping[str, Any] | None, task_args: Mapping[str, Any]) -> dict[str, Any]:
    """`submit`'s `args={...}` and `**task_args` as one mapping; a name in both is an error."""
    merged = dict(args or {})
    clash = merged.keys() & task_args.keys()
    if clash:
        raise TypeError(f"args given twice (in args= and as keywords): {', '.join(sorted(clash))}")
    merged.update(task_args)
    return merged


def submit(spec: JobSpec) -> Call[Job]:
    return Call("POST", "/jobs", Job.from_json, json=spec.to_json())


def job_bodies(specs: Iterable[JobSpec | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Job submissions as the JSON objects the server reads."""
    return [spec.to_json() if isinstance(spec, JobSpec) else dict(spec) for spec in specs]


def submit_many(specs: Iterable[JobSpec | Mapping[str, Any]]) -> Call[list[str]]:
    """`POST /jobs/batch`: the ids of the created jobs."""
    return Call("POST", "/jobs/batch", _ids, json={"jobs": job_bodies(specs)})


def get(job_id: str) -> Call[Job]:
    return Call("GET", job_path(job_id), Job.from_json)


def list_jobs(
    *, limit: int | None = None, cursor: str | None = None, **filters: Unpack[JobFilters]
) -> Call[JobPage]:
    """`GET /jobs`, leaving out the filters that were not asked for."""
    paging = {"limit": limit, "cursor": cursor}
    params = filter_values(filters)
    params.update({name: str(value) for name, value in paging.items() if value is not None})
    return Call("GET", "/jobs", _job_page, params=params)


def cancel(job_id: str) -> Call[Job]:
    return Call("POST", job_path(job_id, "/cancel"), Job.from_json)


def retry(job_id: str) -> Call[Job]:
    return Call("POST", job_path(job_id, "/retry"), Job.from_json)


def history_page(job_id: str, after: int) -> Call[tuple[list[Event], int | None]]:
    """One page of the JSON history after `after`, and the `after` of the next (None: done)."""
    return Call("GET", job_path(job_id, "/events"), _history_page, params={"after": str(after)})


def tasks() -> Call[list[TaskInfo]]:
    return Call("GET", "/tasks", lambda body: [TaskInfo.from_json(item) for item in body["tasks"]])


def workers() -> Call[list[WorkerInfo]]:
    return Call(
        "GET", "/workers", lambda body: [WorkerInfo.from_json(item) for item in body["workers"]]
    )


def queues() -> Call[list[QueueInfo]]:
    return Call(
        "GET", "/queues", lambda body: [QueueInfo.from_json(item) for item in body["queues"]]
    )


def _ids(body: Any) -> list[str]:
    return [str(job_id) for job_id in body["ids"]]


def _history_page(body: Any) -> tuple[list[Event], int | None]:
    next_after = body.get("next_after")
    events = [Event.from_json(item) for item in body["events"]]
    return events, None if next_after is None else int(next_after)


def _job_page(body: Any) -> JobPage:
    return JobPage(
        jobs=[Job.from_json(item) for item in body.get("jobs", [])],
        next_cursor=body.get("next_cursor"),
    )
