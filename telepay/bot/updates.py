"""Updates from different people handled at once, each person's own updates in order.

PTB handles one update at a time by default, so one person's slow step (an invoice waiting on
the payment provider) held up everyone's `/start`. `PerUserUpdateProcessor` lets PTB run updates
concurrently and serialises them per key: the person who sent the update (or, for updates with
nobody behind them, such as a channel post, the chat). A person's conversation therefore sees
their updates in the order Telegram sent them, as it would with one update at a time, while
everybody else goes on. Waiters on an `asyncio.Lock` are woken first in, first out, and PTB
creates the tasks in the order the updates arrive, so the order within a key is kept.

One person flooding the bot cannot fill every slot: beyond `backlog` updates waiting under one
key, further messages and button presses from that key are dropped (logged). Those are the only
kinds dropped: a join request or a membership change always waits its turn.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Coroutine, Hashable, cast

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from telepay.logs import log_context

logger = logging.getLogger(__name__)


def update_key(update: object) -> Hashable | None:
    """Whose turn this update waits for: the user behind it, else its chat; None for neither."""
    if not isinstance(update, Update):
        return None
    if update.effective_user is not None:
        return ("user", update.effective_user.id)
    if update.effective_chat is not None:
        return ("chat", update.effective_chat.id)
    return None


def update_ids(update: object) -> dict[str, int]:
    """The log fields of an update: who sent it and in which chat."""
    if not isinstance(update, Update):
        return {}
    user, chat = update.effective_user, update.effective_chat
    return {**({"user_id": user.id} if user else {}), **({"chat_id": chat.id} if chat else {})}


def _droppable(update: object) -> bool:
    return isinstance(update, Update) and (update.message is not None or update.callback_query is not None)


class PerUserUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 512, backlog: int = 32):
        super().__init__(max_concurrent_updates)
        self.backlog = backlog
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._waiting: dict[Hashable, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        # PTB runs each update in a task of its own, and this awaits its handlers: the ids set
        # here are on every line logged while the update is handled, and on nothing else.
        with log_context(**update_ids(update)):
            await self._in_turn(update, coroutine)

    async def _in_turn(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = update_key(update)
        if key is None:
            await coroutine
            return
        if self._waiting.get(key, 0) >= self.backlog and _droppable(update):
            logger.warning("update %s dropped: %s already has %s updates waiting",
                           getattr(update, "update_id", "?"), key, self.backlog)
            # Never awaited: say so, instead of a "never awaited" warning.
            cast(Coroutine[Any, Any, Any], coroutine).close()
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                # Nobody else holds or waits for this lock: forget the key (bounded memory).
                del self._waiting[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up: locks are made on first use."""

    async def shutdown(self) -> None:
        """Nothing to free: the application has finished every update before this."""
