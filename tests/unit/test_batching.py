"""`core.batching.Batcher`: calls that arrive during a batch run together as the next one."""

from __future__ import annotations

import asyncio

import pytest

from tidings.server.batching import Batcher


class Doubler:
    """A batch function that doubles numbers, refuses negative ones, and records batches.

    While `gate` is closed, a batch waits inside the call, as a slow round trip would.
    """

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.inside = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        self.inside.set()
        await self.gate.wait()
        if 13 in items:
            raise RuntimeError("the whole batch failed")
        return [ValueError(f"negative: {n}") if n < 0 else n * 2 for n in items]


async def test_calls_made_during_a_batch_run_together_next() -> None:
    run = Doubler()
    batcher = Batcher(run, name="test")
    batcher.start()
    try:
        run.gate.clear()
        first = asyncio.create_task(batcher.call(1))
        await run.inside.wait()  # the first call runs alone, at once
        later = [asyncio.create_task(batcher.call(n)) for n in (2, 3, 4)]
        run.gate.set()
        assert await first == 2
        assert await asyncio.gather(*later) == [4, 6, 8]
    finally:
        await batcher.close()
    assert run.batches == [[1], [2, 3, 4]]


async def test_an_outcome_goes_to_its_own_caller_only() -> None:
    run = Doubler()
    batcher = Batcher(run, name="test")
    batcher.start()
    try:
        results = await asyncio.gather(
            batcher.call(1), batcher.call(-1), batcher.call(5), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert results[0] == 2 and results[2] == 10
    assert isinstance(results[1], ValueError)


async def test_a_batch_that_raises_fails_its_callers_and_the_next_batch_still_runs() -> None:
    run = Doubler()
    batcher = Batcher(run, name="test")
    batcher.start()
    try:
        failed = await asyncio.gather(batcher.call(13), batcher.call(1), return_exceptions=True)
        assert all(isinstance(outcome, RuntimeError) for outcome in failed)
        assert await batcher.call(2) == 4
    finally:
        await batcher.close()


async def test_batches_are_capped_and_close_runs_what_was_called() -> None:
    run = Doubler()
    sizes: list[int] = []
    batcher = Batcher(run, name="test", max_batch=2, on_batch=sizes.append)
    batcher.start()
    # gather starts the calls before close: they are pending when it is asked to stop.
    *results, _ = await asyncio.gather(*(batcher.call(n) for n in range(5)), batcher.close())
    assert results == [0, 2, 4, 6, 8]
    assert sizes == [2, 2, 1]
    assert not batcher.running
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.call(1)
