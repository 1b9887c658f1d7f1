"""How a pass pairs the jobs it claimed with the tokens it took."""

from __future__ import annotations

import uuid
from typing import Any

from tidings.worker.pickup import Delivery, pair


def token(job_id: uuid.UUID | None) -> Delivery:
    return Delivery(f"{job_id or uuid.uuid4()}:1", job_id, 1)


def rows(*job_ids: uuid.UUID) -> list[Any]:
    return [{"id": job_id} for job_id in job_ids]


def test_a_claimed_job_takes_its_own_token_then_jobless_ones() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    of_a, of_b, wake = token(a), token(b), token(None)
    # b and c were claimed; a (its token taken too) still waits.
    paired = pair([of_a, of_b, wake], rows(b, c))
    assert [(delivery, row and row["id"]) for delivery, row in paired] == [
        (of_b, b),
        (wake, c),
        (of_a, None),  # left to check whether a still waits
    ]


def test_every_token_is_paired_once_whatever_was_claimed() -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    tokens = [token(job_id) for job_id in ids] + [token(None)]
    for claimed in ([], ids[:2], [uuid.uuid4(), uuid.uuid4()], ids):
        paired = pair(tokens, rows(*claimed))
        assert sorted(map(id, (delivery for delivery, _ in paired))) == sorted(map(id, tokens))
        claimed_rows = [str(row["id"]) for _, row in paired if row is not None]
        assert sorted(claimed_rows) == sorted(map(str, claimed))
