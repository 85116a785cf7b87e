"""SIGTERM and SIGINT at any moment of `telepay run`: a clean stop, exit 0, nothing left behind.

Before the event loop runs (settings, the embedded server's start, the wait for the database,
migrations check) a signal raises SystemExit(0): `finally` blocks and atexit handlers run, and
atexit is where pgserver stops the embedded PostgreSQL. Python's default for SIGTERM would end
the process on the spot (exit 143) and leave that server running.
Once the loop runs, the same signal only sets the loop's stop event, so a start under way
finishes and then everything stops in order.
"""

from __future__ import annotations

import asyncio
import logging
import signal

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.received: int | None = None

    def install(self) -> StopSignals:
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def attach(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """From now on a signal sets `event` on `loop` (called from inside the loop)."""
        self._loop, self._event = loop, event
        if self.received is not None:
            event.set()

    def detach(self) -> None:
        self._loop = self._event = None

    def _handle(self, signum, _frame) -> None:
        first = self.received is None
        self.received = signum
        if self._loop is not None and self._event is not None:
            # Python runs this between bytecodes of the main thread, which is the loop's:
            # call_soon_threadsafe also wakes a loop asleep in select().
            self._loop.call_soon_threadsafe(self._event.set)
            return
        if first:
            logger.info("%s during start-up or shutdown: stopping", signal.Signals(signum).name)
            raise SystemExit(0)
