"""Timers run on PTB's JobQueue and record each run for /status."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from telegram.ext import ApplicationBuilder

from telepay.clock import SystemClock
from telepay.models import TimerRun
from telepay_sandbox.telegram import TelegramSandbox
from telepay.services.timers import TimerLog, schedule


def test_runs_are_recorded_with_their_errors(session_factory):
    ran = []

    async def good():
        ran.append("good")

    async def bad():
        raise RuntimeError("chain unreachable")

    async def scenario():
        application = ApplicationBuilder().token(telegram.token).base_url(telegram.base_url).updater(None).build()
        log = TimerLog(session_factory, SystemClock())
        schedule(application, log, "good", 0.1, good, first_seconds=0)
        schedule(application, log, "bad", 0.1, bad, first_seconds=0)
        async with application:
            await application.start()
            for _ in range(100):
                with session_factory() as session:
                    rows = {r.name: r for r in session.scalars(select(TimerRun))}
                if len(rows) == 2 and all(r.last_finished_at for r in rows.values()):
                    break
                await asyncio.sleep(0.05)
            await application.stop()
        return rows

    with TelegramSandbox() as telegram:
        rows = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert ran and rows["good"].last_error is None
    assert "chain unreachable" in rows["bad"].last_error
