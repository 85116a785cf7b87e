"""Timers: every run recorded for /status, and each interval's run taken by one process only."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from telepay.clock import SystemClock
from telepay.models import TimerRun
from telepay.services.timers import STOPPED, TimerLog, Timers


def _rows(session_factory) -> dict[str, TimerRun]:
    with session_factory() as session:
        return {r.name: r for r in session.scalars(select(TimerRun))}


def test_runs_are_recorded_with_their_errors(session_factory):
    ran = []

    async def good():
        ran.append("good")

    async def bad():
        raise RuntimeError("chain unreachable")

    async def scenario():
        timers = Timers(TimerLog(session_factory, SystemClock()))
        timers.add("good", 60, good, first_seconds=0)  # one run each within the test
        timers.add("bad", 60, bad, first_seconds=0)
        timers.start()
        for _ in range(300):  # a shared, busy machine: up to 15 s
            rows = await asyncio.to_thread(_rows, session_factory)
            if len(rows) == 2 and all(r.last_finished_at for r in rows.values()):
                break
            await asyncio.sleep(0.05)
        await timers.stop()
        return rows

    rows = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert ran and rows["good"].last_error is None
    assert "chain unreachable" in rows["bad"].last_error


def test_three_processes_fire_a_timer_once_per_interval_and_never_together(session_factory):
    """Three schedulers (as in three worker processes) share one timer: over 3 s at 0.25 s a run,
    about 12 runs happen in all (not 36), one at a time."""
    runs: list[tuple[int, float]] = []
    running = [0]
    overlaps = [0]

    def claimed_at() -> float:
        # The start the claim recorded: the spacing is the claim's promise. When the body begins
        # also depends on how long that claim's commit took on a busy machine.
        return _rows(session_factory)["shared"].last_started_at.timestamp()

    def body_of(process: int):
        async def body():
            running[0] += 1
            overlaps[0] += running[0] > 1
            claimed = await asyncio.to_thread(claimed_at)
            await asyncio.sleep(0.05)  # long enough for a second run to start, were it allowed
            running[0] -= 1
            runs.append((process, claimed))
        return body

    async def scenario():
        # Each "process" has its own log (its own clock reads) on the same database.
        processes = [Timers(TimerLog(session_factory, SystemClock())) for _ in range(3)]
        for n, timers in enumerate(processes):
            timers.add("shared", 0.25, body_of(n), first_seconds=0.01 * n)
            timers.start()
        await asyncio.sleep(3.0)
        for timers in processes:
            await timers.stop()

    asyncio.run(scenario())
    assert overlaps[0] == 0
    assert 8 <= len(runs) <= 14, runs
    starts = sorted(claimed for _, claimed in runs)
    assert len(set(starts)) == len(runs)  # each run read its own claim
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.25 * 0.9 - 0.001


def test_an_unfinished_run_holds_the_timer_until_it_is_taken_for_dead(session_factory):
    clock = SystemClock()
    log = TimerLog(session_factory, clock)
    assert log.claim("sweep", 60)
    assert not log.claim("sweep", 60)  # running (a process died mid-run, or still at it)
    with session_factory.begin() as session:  # ... 61 s later: due, but still not finished
        session.get(TimerRun, "sweep").last_started_at = clock.now() - timedelta(seconds=61)
    assert not log.claim("sweep", 60)
    with session_factory.begin() as session:  # ... past stale_after (120 s): its process is gone
        session.get(TimerRun, "sweep").last_started_at = clock.now() - timedelta(seconds=121)
    assert log.claim("sweep", 60)


def test_a_run_stopped_by_shutdown_frees_the_timer_at_once(session_factory):
    started = asyncio.Event

    async def scenario():
        began = started()

        async def slow():
            began.set()
            await asyncio.sleep(30)

        timers = Timers(TimerLog(session_factory, SystemClock()))
        timers.add("slow", 0.1, slow, first_seconds=0)
        timers.start()
        await asyncio.wait_for(began.wait(), 10)
        await timers.stop()

    asyncio.run(scenario())
    row = _rows(session_factory)["slow"]
    assert row.last_error == STOPPED and row.last_finished_at >= row.last_started_at
    with session_factory.begin() as session:  # an interval later, another process may take it
        session.get(TimerRun, "slow").last_started_at -= timedelta(seconds=1)
        session.get(TimerRun, "slow").last_finished_at -= timedelta(seconds=1)
    assert TimerLog(session_factory, SystemClock()).claim("slow", 0.1)
