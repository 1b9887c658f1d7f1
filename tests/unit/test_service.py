"""The start/stop contract every background loop keeps (`core.service.Service`)."""

from __future__ import annotations

import asyncio

import pytest

from tidings.core.service import FIRST_RESTART_DELAY_S, MAX_RESTART_DELAY_S, Service


class Loop:
    """A run() that records what happened to it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False
        self.finished = False
        self.go_on = asyncio.Event()

    async def forever(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def until_drained(self) -> None:
        self.started.set()
        await self.go_on.wait()
        self.finished = True


class Sleeps:
    """A sleep that records each delay and lets a test decide when it returns."""

    def __init__(self, returns: int) -> None:
        self.delays: list[float] = []
        self.held = asyncio.Event()  # set once a sleep no longer returns
        self._returns = returns

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) > self._returns:
            self.held.set()
            await asyncio.Event().wait()


async def within(event: asyncio.Event) -> None:
    async with asyncio.timeout(5.0):
        await event.wait()


async def test_start_runs_the_loop_and_stop_cancels_it() -> None:
    loop = Loop()
    service = Service("t", loop.forever)
    assert not service.running
    service.start()
    assert service.running
    await within(loop.started)
    await service.stop()
    assert loop.cancelled and not service.running


async def test_stopping_twice_or_before_starting_is_harmless() -> None:
    service = Service("t", Loop().forever)
    await service.stop()
    service.start()
    await service.stop()
    await service.stop()
    assert not service.running


async def test_a_running_service_cannot_be_started_again() -> None:
    service = Service("t", Loop().forever)
    service.start()
    with pytest.raises(RuntimeError, match="already running"):
        service.start()
    await service.stop()


async def test_stop_drains_a_service_that_can_finish_on_its_own() -> None:
    loop = Loop()
    service = Service("t", loop.until_drained, drain=loop.go_on.set)
    service.start()
    await within(loop.started)
    await service.stop()
    assert loop.finished  # it returned by itself: not cancelled midway


async def test_a_drain_that_takes_too_long_is_cancelled() -> None:
    loop = Loop()
    service = Service("t", loop.forever, drain=lambda: None, stop_timeout_s=0.01)
    service.start()
    await within(loop.started)
    await service.stop()
    assert loop.cancelled


async def test_a_crash_is_restarted_with_growing_capped_delays() -> None:
    crashes = 12
    sleeps = Sleeps(returns=crashes)
    restarts: list[int] = []

    async def always_failing() -> None:
        raise RuntimeError("bug")

    service = Service("t", always_failing, sleep=sleeps, on_restart=lambda: restarts.append(1))
    service.start()
    await within(sleeps.held)
    assert service.crashes == crashes + 1
    assert len(restarts) == crashes
    expected, delay = [], FIRST_RESTART_DELAY_S
    for _ in range(crashes + 1):
        expected.append(delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_S)
    assert sleeps.delays == expected
    assert max(sleeps.delays) == MAX_RESTART_DELAY_S
    await service.stop()


async def test_a_restarted_loop_runs_again_with_its_state() -> None:
    runs: list[int] = []
    again = asyncio.Event()

    async def fails_once() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise OSError("redis went away")
        again.set()
        await asyncio.Event().wait()

    service = Service("t", fails_once, outages=(OSError,), sleep=Sleeps(returns=1))
    service.start()
    await within(again)
    assert service.running and service.crashes == 1 and len(runs) == 2
    await service.stop()


async def test_a_fatal_crash_stops_the_service_and_reaches_its_owner() -> None:
    crashing = asyncio.Event()

    async def failing() -> None:
        crashing.set()
        raise ValueError("fatal")

    service = Service("t", failing, restart=False)
    service.start()
    await within(crashing)  # it raises in the same step, before this wakes up
    assert not service.running
    with pytest.raises(ValueError, match="fatal"):
        await service.stop()


async def test_an_owner_that_stops_waiting_for_a_drain_takes_the_loop_down_with_it() -> None:
    loop = Loop()
    service = Service("t", loop.forever, drain=lambda: None, stop_timeout_s=None)
    service.start()
    await within(loop.started)
    stopping = asyncio.create_task(service.stop())
    await asyncio.sleep(0)  # the stop is waiting on the drain, which never ends
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert loop.cancelled
