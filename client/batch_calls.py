"""What each batch method sends and how its answer is read, with no I/O (as `client.calls`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from tidings.client.batch_models import Batch, BatchChange, BatchPage
from tidings.client.calls import Call, job_bodies
from tidings.client.models import JobSpec


def batch_path(batch_id: str, suffix: str = "") -> str:
    """`/batches/{id}{suffix}`, with the id escaped: a typo must not become another path."""
    return f"/batches/{quote(str(batch_id), safe='')}{suffix}"


def submit_batch(
    specs: Iterable[JobSpec | Mapping[str, Any]],
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Call[Batch]:
    """`POST /batches`: the batch, with its members' ids in the order given."""
    body: dict[str, Any] = {"jobs": job_bodies(specs)}
    if name is not None:
        body["name"] = name
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return Call("POST", "/batches", Batch.from_json, json=body)


def get_batch(batch_id: str) -> Call[Batch]:
    return Call("GET", batch_path(batch_id), Batch.from_json)


def list_batches(*, limit: int | None = None, cursor: str | None = None) -> Call[BatchPage]:
    """`GET /batches`, newest first."""
    given = {"limit": limit, "cursor": cursor}
    params = {name: str(value) for name, value in given.items() if value is not None}
    return Call("GET", "/batches", _batch_page, params=params)


def cancel_batch(batch_id: str) -> Call[BatchChange]:
    """`POST /batches/{id}/cancel`: the batch, and how many members were cancelled."""
    return Call("POST", batch_path(batch_id, "/cancel"), _change("cancelled"))


def retry_batch(batch_id: str) -> Call[BatchChange]:
    """`POST /batches/{id}/retry`: the batch, and how many failed members run again."""
    return Call("POST", batch_path(batch_id, "/retry"), _change("retried"))


def _batch_page(body: Any) -> BatchPage:
    return BatchPage(
        batches=[Batch.from_json(item) for item in body.get("batches", [])],
        next_cursor=body.get("next_cursor"),
    )


def _change(count_field: str) -> Callable[[Any], BatchChange]:
    def read(body: Any) -> BatchChange:
        return BatchChange(batch=Batch.from_json(body["batch"]), count=int(body[count_field]))

    return read
