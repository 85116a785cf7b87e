"""Periodic work (reposts, sweeps, payout batches): asyncio tasks in every worker process, each
run claimed in `timer_runs` first, so a timer fires once per interval across all processes, and
every run is recorded there for `/status` (when each timer last ran and how it ended).

The claim is one statement on the timer's row: a process may start a run only if the last run
started at least (almost) an interval ago and has finished, or started so long ago that its
process must have died (`stale_after`). Two processes racing for the same row are serialised by
its row lock, and the second one sees the first's start. Every process checks once per interval;
the first to find the timer due runs it.

A timer's body must be safe to run again at any moment: a run cut short by a crash simply happens
again once it is taken for dead, and a run cut short by a shutdown is recorded as stopped, so
another process may take the next one at once.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import TimerRun

logger = logging.getLogger(__name__)

TimerBody = Callable[[], Awaitable[None]]

# A run may start a little before a full interval has passed since the last one: the processes'
# sleeps are not exact, and a run found "0.1 ms early" would otherwise be skipped for a whole
# interval.
EARLY_FRACTION = 0.1
STOPPED = "stopped with the process"

_CLAIM = text("""
INSERT INTO timer_runs (name, last_started_at) VALUES (:name, :now)
ON CONFLICT (name) DO UPDATE SET last_started_at = :now, last_error = NULL
WHERE timer_runs.last_started_at IS NULL
   OR (timer_runs.last_started_at <= :due_before
       AND (timer_runs.last_finished_at >= timer_runs.last_started_at
            OR timer_runs.last_started_at <= :dead_before))
RETURNING name
""")


def stale_after(every_seconds: float) -> timedelta:
    """How long an unfinished run holds its timer before it is taken for dead (its process gone)."""
    return timedelta(seconds=max(2 * every_seconds, 120.0))


class TimerLog:
    def __init__(self, session_factory: sessionmaker[Session], clock: Clock):
        self.session_factory = session_factory
        self.clock = clock

    def claim(self, name: str, every_seconds: float) -> bool:
        """Record the start of a run if the timer is due and nobody runs it; False otherwise."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            claimed = session.execute(_CLAIM, {
                "name": name, "now": now,
                "due_before": now - timedelta(seconds=every_seconds * (1 - EARLY_FRACTION)),
                "dead_before": now - stale_after(every_seconds),
            }).first()
        return claimed is not None

    def _write(self, name: str, **values) -> None:
        with self.session_factory.begin() as session:
            session.execute(insert(TimerRun).values(name=name, **values)
                            .on_conflict_do_update(index_elements=["name"], set_=values))

    async def finished(self, name: str, error: str | None) -> None:
        await asyncio.to_thread(self._write, name, last_finished_at=self.clock.now(), last_error=error)


@dataclass(frozen=True)
class _Timer:
    name: str
    every_seconds: float
    body: TimerBody
    first_seconds: float


class Timers:
    """The process's timers: `add` them, `start` on the running loop, `stop` on shutdown."""

    def __init__(self, log: TimerLog):
        self.log = log
        self._timers: list[_Timer] = []
        self._tasks: list[asyncio.Task] = []

    def add(self, name: str, every_seconds: float, body: TimerBody, first_seconds: float = 1.0) -> None:
        """Run `body` every `every_seconds` (the first check after `first_seconds`), once across processes."""
        self._timers.append(_Timer(name, every_seconds, body, first_seconds))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(timer), name=f"timer-{timer.name}") for timer in self._timers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self, timer: _Timer) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(timer.first_seconds)
        while True:
            began = loop.time()
            try:
                if await self._claim(timer):
                    await self._run(timer)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be away for a moment; the next check retries
                logger.exception("timer %s could not be claimed or recorded", timer.name)
            # Checks keep their rhythm whatever a run took; a run longer than the interval is
            # followed by the next check at once (never by an overlapping run).
            await asyncio.sleep(max(0.0, timer.every_seconds - (loop.time() - began)))

    async def _claim(self, timer: _Timer) -> bool:
        claiming = asyncio.ensure_future(asyncio.to_thread(self.log.claim, timer.name, timer.every_seconds))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # A shutdown that lands mid-claim: the claim may still commit; if it does, close the
            # run at once rather than leave the timer held by a run that never happens.
            if await claiming:
                await self.log.finished(timer.name, STOPPED)
            raise

    async def _run(self, timer: _Timer) -> None:
        error = None
        try:
            await timer.body()
        except asyncio.CancelledError:
            # Shutdown: say so, so another process need not wait for this run to be taken for dead.
            await asyncio.shield(self.log.finished(timer.name, STOPPED))
            raise
        except Exception as failure:  # noqa: BLE001 - recorded and logged; the next run tries again
            error = "".join(traceback.format_exception_only(type(failure), failure)).strip()
            logger.error("timer %s failed", timer.name, exc_info=failure)
        await self.log.finished(timer.name, error)
