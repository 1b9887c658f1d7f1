"""Jobs that wait for other jobs: naming the dependencies, and linking them in Postgres.

A submission's `depends_on` lists job ids, or in a batch the `ref` of another of its jobs.
`plan` gives every new job its id and resolves the refs (a ref naming nothing, the job
itself, or a cycle of refs is a 422; ids given directly already exist, so they cannot
close a cycle). In the inserting transaction, `lock` first locks and marks the existing
dependencies (an unknown id, or another tenant's, is a 422 that rolls everything back);
after the insert, `link` stores the edges and settles each new job: still waiting,
released at once when everything it waits for has ended, or failed by a dependency that
already failed (migration 0008, `settle_new_dependents`). From then on the database
releases it in the transaction that records its last dependency's end.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidings.core.db.pool import Connection
from tidings.core.errors import Unprocessable

if TYPE_CHECKING:
    from tidings.core.submission import JobRequest

_MARK_DEPENDED_ON = """
UPDATE jobs SET has_dependents = true
 WHERE id = ANY($1::uuid[]) AND tenant = $2
RETURNING id
"""
_LINK = """
INSERT INTO job_dependencies (depends_on, job_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[])
ON CONFLICT DO NOTHING
"""
_SETTLE = "SELECT settle_new_dependents($1::uuid[])"


@dataclass(frozen=True)
class Plan:
    """The ids of the new jobs, in request order, and the ids each one depends on."""

    ids: list[uuid.UUID]
    depends_on: list[list[uuid.UUID] | None]

    @property
    def any(self) -> bool:
        return any(self.depends_on)


def _invalid(index: int | None, message: str, reason: str, code: str) -> Unprocessable:
    field = "body.depends_on" if index is None else f"body.jobs[{index}].depends_on"
    return Unprocessable(message, {"field": field, "reason": reason}, code=code)


def plan(requests: Sequence[JobRequest], *, in_batch: bool) -> Plan:
    """Ids for `requests` and their dependencies as ids; refs resolved, cycles refused."""
    ids = [uuid.uuid4() for _ in requests]
    refs: dict[str, int] = {}
    for index, request in enumerate(requests):
        if request.ref is None:
            continue
        if request.ref in refs:
            raise Unprocessable(
                f"ref {request.ref!r} names two jobs of the batch",
                {"field": f"body.jobs[{index}].ref", "reason": f"also job {refs[request.ref]}"},
                code="duplicate_ref",
            )
        refs[request.ref] = index
    edges: list[list[int]] = [[] for _ in requests]
    resolved: list[list[uuid.UUID] | None] = []
    for index, request in enumerate(requests):
        where = index if in_batch else None
        mine: list[uuid.UUID] = []
        for name in request.depends_on:
            if name in refs:
                if refs[name] == index:
                    raise _invalid(
                        where,
                        "a job cannot depend on itself",
                        f"{name!r} is this job's own ref",
                        "self_dependency",
                    )
                edges[index].append(refs[name])
                mine.append(ids[refs[name]])
                continue
            try:
                mine.append(uuid.UUID(name))
            except ValueError:
                raise _invalid(
                    where,
                    f"depends_on entry {name!r} is neither a job id nor a ref of this batch",
                    "not a UUID" if not in_batch else "no job of the batch has this ref",
                    "unknown_dependency",
                ) from None
        resolved.append(list(dict.fromkeys(mine)) or None)
    cycle = _find_cycle(edges)
    if cycle is not None:
        names = [requests[i].ref or f"#{i}" for i in cycle]
        raise _invalid(
            cycle[0],
            "the dependencies form a cycle: " + " → ".join([*names, names[0]]),
            "a job would wait for itself",
            "dependency_cycle",
        )
    return Plan(ids, resolved)


def _find_cycle(edges: list[list[int]]) -> list[int] | None:
    """A cycle of the graph (job → the jobs it waits for), as the jobs on it, or None."""
    state = [0] * len(edges)  # 0 unseen, 1 on the current path, 2 done
    for start in range(len(edges)):
        if state[start]:
            continue
        path: list[int] = []
        stack: list[tuple[int, int]] = [(start, 0)]
        while stack:
            node, next_edge = stack.pop()
            if next_edge == 0:
                state[node] = 1
                path.append(node)
            if next_edge < len(edges[node]):
                stack.append((node, next_edge + 1))
                target = edges[node][next_edge]
                if state[target] == 1:
                    return path[path.index(target) :]
                if state[target] == 0:
                    stack.append((target, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _targets(plan: Plan) -> set[uuid.UUID]:
    return {dep for deps in plan.depends_on if deps for dep in deps}


async def lock(conn: Connection, plan: Plan, *, tenant: str) -> None:
    """Lock and mark the existing jobs the plan depends on; 422 if one is unknown (or
    another tenant's). Run in the inserting transaction, before the insert: a job that
    ends meanwhile waits for this commit and then sees the new edges, and the locks are
    taken in the order every transition takes them (the job, then its batch's row), so
    this cannot deadlock with one that is ending (a new member locks its batch's row)."""
    existing = sorted(_targets(plan) - set(plan.ids))
    if existing:
        found = {row["id"] for row in await conn.fetch(_MARK_DEPENDED_ON, existing, tenant)}
        unknown = [str(job_id) for job_id in existing if job_id not in found]
        if unknown:
            raise Unprocessable(
                f"{len(unknown)} of the jobs depended on do not exist",
                {"field": "depends_on", "reason": "unknown job ids", "ids": unknown[:20]},
                code="unknown_dependency",
            )


async def link(conn: Connection, plan: Plan, *, tenant: str) -> None:
    """Store the planned dependencies of jobs just inserted on `conn` (after `lock`, in
    the same transaction) and settle them."""
    internal = sorted(_targets(plan) & set(plan.ids))
    if internal:
        await conn.execute(_MARK_DEPENDED_ON, internal, tenant)
    froms: list[uuid.UUID] = []
    tos: list[uuid.UUID] = []
    for job_id, deps in zip(plan.ids, plan.depends_on, strict=True):
        for dep in deps or ():
            froms.append(dep)
            tos.append(job_id)
    await conn.execute(_LINK, froms, tos)
    waiting = [job_id for job_id, deps in zip(plan.ids, plan.depends_on, strict=True) if deps]
    await conn.execute(_SETTLE, waiting)
