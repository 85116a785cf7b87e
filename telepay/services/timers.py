"""Periodic work (reposts, sweeps, payout batches) on PTB's JobQueue, with every run recorded
in `timer_runs` so `/status` shows when each timer last ran and how it ended.

A timer's body must be safe to run again at any moment: a run cut short by a restart simply
happens again on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Awaitable, Callable

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from telegram.ext import Application, ContextTypes

from telepay.clock import Clock
from telepay.models import TimerRun

logger = logging.getLogger(__name__)

TimerBody = Callable[[], Awaitable[None]]


class TimerLog:
    def __init__(self, session_factory: sessionmaker[Session], clock: Clock):
        self.session_factory = session_factory
        self.clock = clock

    def _write(self, name: str, **values) -> None:
        with self.session_factory.begin() as session:
            session.execute(insert(TimerRun).values(name=name, **values)
                            .on_conflict_do_update(index_elements=["name"], set_=values))

    async def started(self, name: str) -> None:
        await asyncio.to_thread(self._write, name, last_started_at=self.clock.now())

    async def finished(self, name: str, error: str | None) -> None:
        await asyncio.to_thread(self._write, name, last_finished_at=self.clock.now(), last_error=error)


def schedule(application: Application, log: TimerLog, name: str, every_seconds: float, body: TimerBody,
             first_seconds: float = 1.0) -> None:
    """Run `body` every `every_seconds` on the application's loop, recording each run."""

    async def tick(context: ContextTypes.DEFAULT_TYPE) -> None:
        await log.started(name)
        error = None
        try:
            await body()
        except Exception as failure:  # noqa: BLE001 - recorded and logged; the next tick tries again
            error = "".join(traceback.format_exception_only(type(failure), failure)).strip()
            logger.error("timer %s failed", name, exc_info=failure)
        await log.finished(name, error)

    # coalesce + one instance: a slow run is never overlapped by the next tick.
    application.job_queue.run_repeating(tick, interval=every_seconds, first=first_seconds, name=name,
                                        job_kwargs={"max_instances": 1, "coalesce": True})
