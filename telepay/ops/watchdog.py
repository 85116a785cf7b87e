"""systemd notifications: READY=1 once serving, STOPPING=1 on the way out, and WATCHDOG=1 fed
only while the loops that do the work keep turning.

The protocol is one datagram per message on the unix socket named by $NOTIFY_SOCKET (a
leading "@" means the abstract namespace); $WATCHDOG_USEC says how often systemd wants to hear
from us. Without $NOTIFY_SOCKET (not under systemd) every call is a no-op.

What "turning" means: the worker's loop and the poll supervisor have each beaten within
STALE_SECONDS. The supervisor, not each getUpdates, is what counts for polling: a token that
Telegram refuses is handled (retried with backoff, alerted) and a restart would not fix it,
while a frozen event loop or a stuck worker stops the beats and gets the process restarted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Mapping

from telepay.ops.liveness import Beats

logger = logging.getLogger(__name__)

STALE_SECONDS = 60.0
WATCHED = ("worker", "poll_supervisor")


class Watchdog:
    def __init__(self, beats: Beats, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.beats = beats
        address = environ.get("NOTIFY_SOCKET") or None
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC")
        self.interval = int(usec) / 1_000_000 if usec and usec.isdigit() else None

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait: a receiver whose queue is full must not freeze the event loop.
                sock.setblocking(False)
                sock.sendto(message.encode(), self.address)
            return True
        except OSError as error:
            logger.warning("could not notify systemd (%s): %s", message.split("=")[0], error)
            return False

    def stale(self) -> list[str]:
        """The watched loops that have not beaten lately (a loop this process never ran is not watched)."""
        return [name for name in WATCHED
                if (age := self.beats.age(name)) is not None and age > STALE_SECONDS]

    async def run(self, stop: asyncio.Event) -> None:
        """Feed the watchdog at half its interval while nothing is stale."""
        if not self.address or not self.interval:
            return
        every = self.interval / 2
        while not stop.is_set():
            stale = self.stale()
            if stale:
                logger.error("not feeding the systemd watchdog: %s stopped turning", ", ".join(stale))
            else:
                self.notify("WATCHDOG=1")
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except TimeoutError:
                pass
