"""The poller is never silently deaf: what Telegram answered is recorded, and a dead poll loop
is restarted with backoff while the operators are told.

python-telegram-bot retries most polling errors itself (a 409 Conflict from a second poller
included, with backoff up to 30 s), but a 401 ("Invalid token. Aborting retry loop.") ends
its loop for good, with the process and `/health` still looking fine. A token revoked for a
moment, or rotated by the operator, must not leave the bot deaf until someone notices.

`RecordingRequest` is the Bot API transport with a recorder: getUpdates' outcomes feed
`PollWatch` (health, metrics, watchdog), and every 429 is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable

from telegram.error import InvalidToken, TelegramError
from telegram.request import HTTPXRequest

logger = logging.getLogger(__name__)

# What a status code from getUpdates means to an operator.
MEANINGS = {
    401: "Telegram refuses the bot token (revoked or rotated?)",
    404: "Telegram refuses the bot token (revoked or rotated?)",
    409: "another process is polling with this bot token (a second `telepay run`?)",
    429: "Telegram is rate limiting getUpdates",
}


@dataclass
class PollWatch:
    """What the poller last heard; written on the loop, read from any thread (plain fields)."""

    clock: Callable[[], float] = time.monotonic
    last_attempt: float | None = None       # monotonic: a getUpdates call finished (any outcome)
    last_success: float | None = None       # monotonic: a getUpdates call answered 200
    last_success_at: datetime | None = None
    last_status: int | None = None          # HTTP status of the last answer; None: no answer
    last_error: str | None = None
    failures: int = 0                        # consecutive failed getUpdates
    restarts: int = 0                        # times the supervisor restarted a dead poll loop
    last_conflict: float | None = None       # monotonic: the last 409 (another poller on our token)
    too_many_requests: dict[str, int] = field(default_factory=dict)  # Bot API method -> 429s

    def record(self, status: int | None, error: str | None = None) -> None:
        now = self.clock()
        self.last_attempt = now
        self.last_status = status
        if status == 200:
            self.last_success, self.last_success_at = now, datetime.now(timezone.utc)
            self.failures, self.last_error = 0, None
        else:
            self.failures += 1
            self.last_error = error or MEANINGS.get(status or 0, f"getUpdates answered {status}")
            if status == 409:
                self.last_conflict = now

    def seconds_since_success(self) -> float | None:
        return None if self.last_success is None else self.clock() - self.last_success

    def seconds_since_attempt(self) -> float | None:
        return None if self.last_attempt is None else self.clock() - self.last_attempt

    def problem(self) -> str | None:
        """Why polling is not working right now, in words, or None."""
        if self.failures == 0:
            return None
        return f"{self.last_error} ({self.failures} failed getUpdates in a row)"


class RecordingRequest(HTTPXRequest):
    """PTB's HTTPX transport, telling `watch` what Telegram answered."""

    def __init__(self, watch: PollWatch, *, polls: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.watch = watch
        self.polls = polls  # this instance carries getUpdates (PTB's get_updates_request)

    async def do_request(self, url: str, method: str, *args, **kwargs) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        try:
            code, payload = await super().do_request(url, method, *args, **kwargs)
        except Exception as error:
            if self.polls:
                self.watch.record(None, f"no answer from Telegram: {type(error).__name__}")
            raise
        if code == 429:
            self.watch.too_many_requests[api_method] = self.watch.too_many_requests.get(api_method, 0) + 1
        if self.polls and api_method == "getUpdates":
            self.watch.record(code)
        return code, payload


def log_poll_error(error: TelegramError) -> None:
    """PTB's error_callback: one line, collapsed by the log's repeat filter during an outage."""
    logger.warning("getUpdates failed, retrying: %s: %s", type(error).__name__, error)


class PollSupervisor:
    """Restarts polling when its loop has died, with backoff (5 s doubling up to 5 min)."""

    def __init__(self, watch: PollWatch, restart: Callable[[], Awaitable[None]], *,
                 dead_after: float = 60.0, check_every: float = 5.0, max_backoff: float = 300.0,
                 beat: Callable[[], None] = lambda: None) -> None:
        self.watch = watch
        self.restart = restart
        self.beat = beat  # every check: the supervisor itself is alive (health, watchdog)
        # PTB's own backoff tops out at 30 s and a long poll lasts ~15 s: a loop that has not
        # finished a getUpdates for this long is not running.
        self.dead_after = dead_after
        self.check_every = check_every
        self.max_backoff = max_backoff
        self._backoff = 5.0
        self._next_try = 0.0

    def dead(self) -> bool:
        if self.watch.last_status in (401, 404):  # PTB's loop always ends on these
            return True
        since = self.watch.seconds_since_attempt()
        return since is not None and since > self.dead_after

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.beat()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.check_every)
                return
            except TimeoutError:
                pass
            if self.watch.failures == 0:
                self._backoff = 5.0  # polling works again: the next outage starts afresh
            if self.dead() and self.watch.clock() >= self._next_try:
                await self._restart_once()

    async def _restart_once(self) -> None:
        logger.error("polling has stopped (%s); restarting it", self.watch.last_error)
        self.watch.restarts += 1
        # Whatever happens, the next try waits: a token still refused ends the new loop at once.
        self._next_try = self.watch.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)
        try:
            await self.restart()
        except Exception as error:  # noqa: BLE001 - any failure: try again later
            self.watch.failures += 1
            # A refused token fails the restart itself (getMe): keep saying what that means.
            meaning = f"{MEANINGS[401]}: " if isinstance(error, InvalidToken) else ""
            self.watch.last_error = f"polling could not be restarted: {meaning}{type(error).__name__}: {error}"
            logger.error("polling could not be restarted, next try in %d s: %s",
                         self._next_try - self.watch.clock(), error)
