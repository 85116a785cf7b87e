"""PTB persistence in PostgreSQL: conversation states and per-user/per-chat data.

PTB keeps these in memory and hands us changes every `update_interval` seconds (and on
shutdown), so a restart loses at most that interval. Values must be JSON: handlers store
amounts as strings, never Decimal or float. Bot data is not persisted: `bot_data` holds the
live services, which are rebuilt at start.

PTB hands over all of an interval's changes at once, one call per user, chat and conversation
(`asyncio.gather`). Written one transaction each, a busy interval's hundreds of writes filled
every thread `asyncio.to_thread` has, and the worker's database steps (a buyer's invite) queued
behind them for a tenth of a second. So the calls that arrive together are written together:
one statement of upserts and one of deletes, in one transaction, in one thread; each call
returns once its batch has committed. Batches are written in order, so a later value of a key
never lands before an earlier one.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from telegram.ext import BasePersistence, PersistenceInput

from telepay.models import BotState

USER_DATA, CHAT_DATA = "user_data", "chat_data"
CONVERSATION = "conversation:"


_DROP = object()  # a pending delete, in place of a key's new data
_SLICE = 1000


class SqlPersistence(BasePersistence):
    def __init__(self, session_factory: sessionmaker[Session], update_interval: float = 2.0):
        super().__init__(
            store_data=PersistenceInput(bot_data=False, chat_data=True, user_data=True, callback_data=False),
            update_interval=update_interval,
        )
        self.session_factory = session_factory
        self._pending: dict[tuple[str, str], Any] = {}  # (kind, key) -> data or _DROP, for the next batch
        self._batch: asyncio.Future[None] | None = None  # the batch that will take what is pending
        self._in_order = asyncio.Lock()

    # -- storage -----------------------------------------------------------------------------

    def _load(self, kind: str) -> dict[str, Any]:
        with self.session_factory() as session:
            rows = session.execute(select(BotState.key, BotState.data).where(BotState.kind == kind))
            return {str(key): data for key, data in rows}

    async def _save(self, kind: str, key: str, data: Any) -> None:
        json.dumps(data)  # fail here, loudly, rather than store something half-serialisable
        await self._write(kind, key, data)

    async def _drop(self, kind: str, key: str) -> None:
        await self._write(kind, key, _DROP)

    async def _write(self, kind: str, key: str, data: Any) -> None:
        self._pending[(kind, key)] = data
        if self._batch is None:
            self._batch = asyncio.ensure_future(self._write_batch())
        await asyncio.shield(self._batch)  # (one caller cancelled does not cancel the others' batch)

    async def _write_batch(self) -> None:
        async with self._in_order:  # meanwhile, later calls join this batch
            rows, self._pending, self._batch = self._pending, {}, None
            await asyncio.to_thread(self._store, rows)

    def _store(self, rows: dict[tuple[str, str], Any]) -> None:
        saved = [{"kind": kind, "key": key, "data": data} for (kind, key), data in rows.items() if data is not _DROP]
        dropped = [kind_key for kind_key, data in rows.items() if data is _DROP]
        with self.session_factory.begin() as session:
            # In slices: a statement takes at most 32,767 parameters (4 a row here).
            for at in range(0, len(saved), _SLICE):
                upsert = insert(BotState).values(saved[at:at + _SLICE])
                session.execute(upsert.on_conflict_do_update(index_elements=["kind", "key"],
                                                             set_={"data": upsert.excluded.data}))
            for at in range(0, len(dropped), _SLICE):
                session.execute(delete(BotState).where(
                    tuple_(BotState.kind, BotState.key).in_(dropped[at:at + _SLICE])))

    # -- user and chat data ------------------------------------------------------------------

    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        rows = await asyncio.to_thread(self._load, USER_DATA)
        return defaultdict(dict, {int(key): data for key, data in rows.items()})

    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        await self._save(USER_DATA, str(user_id), data)

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        """Nothing to do: this process is the only writer of bot state."""

    async def drop_user_data(self, user_id: int) -> None:
        await self._drop(USER_DATA, str(user_id))

    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        rows = await asyncio.to_thread(self._load, CHAT_DATA)
        return defaultdict(dict, {int(key): data for key, data in rows.items()})

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        await self._save(CHAT_DATA, str(chat_id), data)

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        """Nothing to do: this process is the only writer of bot state."""

    async def drop_chat_data(self, chat_id: int) -> None:
        await self._drop(CHAT_DATA, str(chat_id))

    # -- conversations -----------------------------------------------------------------------

    async def get_conversations(self, name: str) -> dict[tuple, object]:
        rows = await asyncio.to_thread(self._load, CONVERSATION + name)
        return {tuple(json.loads(key)): state for key, state in rows.items()}

    async def update_conversation(self, name: str, key: tuple, new_state: object | None) -> None:
        encoded = json.dumps(list(key))
        if new_state is None:
            await self._drop(CONVERSATION + name, encoded)
        else:
            await self._save(CONVERSATION + name, encoded, new_state)

    # -- not persisted -----------------------------------------------------------------------

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        """Bot data holds live services; it is rebuilt at start, never stored."""

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        """Bot data holds live services; it is rebuilt at start, never stored."""

    async def get_callback_data(self) -> None:
        return None

    async def update_callback_data(self, data: Any) -> None:
        """Arbitrary callback data is not used: buttons carry short plain strings."""

    async def flush(self) -> None:
        """Every update is written through at once; nothing is buffered here."""
