"""The bot's update queue: ids, the allowed_updates filter, getUpdates offsets and long polls.

Shares the world's condition variable, so callers must hold the world lock; `fetch` waits on it
(releasing the lock) for a long poll.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable


# With allowed_updates unset or empty, Telegram sends every kind except these.
NOT_SENT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# Update ids start from "a certain positive number"; a large one catches code assuming small ids.
FIRST_UPDATE_ID = 800_000_001


class PollConflict(Exception):
    """A newer getUpdates request superseded this one (Telegram answers 409)."""


class UpdateQueue:
    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed
        self._ids = itertools.count(FIRST_UPDATE_ID)
        self._pending: list[dict] = []
        self.history: list[dict] = []  # every update ever queued, for tests
        self.allowed_updates: frozenset[str] | None = None  # None: Telegram's default set
        self._poll_generation = 0

    def wants(self, kind: str) -> bool:
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in NOT_SENT_BY_DEFAULT

    def push(self, kind: str, payload: dict) -> dict | None:
        """Queue an update unless the bot's allowed_updates leaves it out.

        Filtering at creation time is what Telegram does: changing allowed_updates does not
        affect updates created before the change.
        """
        if not self.wants(kind):
            return None
        update = {"update_id": next(self._ids), kind: payload}
        self._pending.append(update)
        self.history.append(update)
        self._changed.notify_all()
        return update

    @property
    def pending(self) -> list[dict]:
        return list(self._pending)

    def drop_pending(self) -> None:
        self._pending.clear()

    def set_allowed(self, kinds: Iterable[str] | None) -> None:
        if kinds is not None:
            self.allowed_updates = frozenset(kinds) or None

    def fetch(self, offset: int, limit: int, timeout: float, is_stopping) -> list[dict]:
        """getUpdates: confirm or forget by offset, then wait up to `timeout` for something.

        A newer fetch makes a waiting one raise `PollConflict`, as only one poller may run.
        """
        self._poll_generation += 1
        generation = self._poll_generation
        self._changed.notify_all()  # wake (and so terminate) any older poll
        self._apply_offset(offset)
        deadline = time.monotonic() + timeout
        while not self._pending and not is_stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(remaining)
            if generation != self._poll_generation:
                raise PollConflict
            if offset > 0:  # an offset beyond the newest id also confirms later arrivals
                self._apply_offset(offset)
        return [dict(update) for update in self._pending[:limit]]

    def _apply_offset(self, offset: int) -> None:
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            # -N: keep only the last N updates; everything before is forgotten.
            self._pending = self._pending[offset:]
