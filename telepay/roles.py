"""What one `telepay run` process does (`--roles bot,api,worker`), and the PostgreSQL lock that
keeps the bot poller to one process per bot token.

* `bot`: polls Telegram and answers people. Telegram hands each update to one `getUpdates`
  caller per token, so exactly one process may hold this role: it takes a session-level
  advisory lock keyed on the token's hash, on a connection of its own kept for the process's
  life. A second process asking for the role is refused (exit 2); nothing waits as a standby.
  If the lock's connection is lost, the lock may already be someone else's, so the process stops
  (exit 1) and its supervisor starts it again, to take the lock anew or be refused.
* `api`: the webhook API. It only writes facts and jobs, so any number may run.
* `worker`: claims jobs (`FOR UPDATE SKIP LOCKED`) and runs the timers (each run claimed in
  the database). Any number may run; without the bot role it sends through a `Bot` that never
  polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection
from telegram.ext import Application, ApplicationBuilder

from telepay.bot.ratelimit import outbound_limiter

logger = logging.getLogger(__name__)

BOT, API, WORKER = "bot", "api", "worker"
ALL_ROLES = (BOT, API, WORKER)


def parse_roles(text: str) -> frozenset[str]:
    """`bot,api,worker` (any non-empty subset, any order) -> the set; ValueError names what is wrong."""
    roles = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(roles) - set(ALL_ROLES))
    if unknown:
        raise ValueError(f"unknown role {', '.join(unknown)}; choose from {', '.join(ALL_ROLES)}")
    if not roles:
        raise ValueError(f"no role given; choose from {', '.join(ALL_ROLES)}")
    return frozenset(roles)


def describe_roles(roles: frozenset[str]) -> str:
    return ",".join(role for role in ALL_ROLES if role in roles)


class BotLockHeld(Exception):
    """Another process polls for this bot token."""


class BotLockLost(Exception):
    """The connection holding the bot lock went away; the lock may no longer be ours."""


def lock_key(namespace: str, name: str) -> int:
    """A signed 64-bit advisory lock key for `name` (the token is hashed, never sent as is)."""
    digest = hashlib.sha256(f"telepay:{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class BotLock:
    """The one-poller-per-token lock: `pg_try_advisory_lock` on a connection kept out of the pool.

    A session-level lock lives exactly as long as its database session: a process that dies,
    however it dies, closes its connection and so releases the lock. The connection is detached
    from the pool (the pool may open another in its place) and set to autocommit, so it never
    sits idle inside a transaction.
    """

    def __init__(self, engine: Engine, token: str):
        self.engine = engine
        self.key = lock_key("bot", token)
        self._connection: PoolProxiedConnection | None = None

    def acquire(self) -> None:
        connection = self.engine.raw_connection()
        connection.driver_connection.autocommit = True
        connection.detach()
        try:
            held = self._one(connection, f"SELECT pg_try_advisory_lock({self.key})")
        except Exception:
            connection.close()
            raise
        if not held:
            connection.close()
            raise BotLockHeld("another `telepay run` with the bot role is polling for this bot token "
                              "against this database; run this one with --roles api,worker, or stop the other")
        self._connection = connection
        logger.info("bot lock taken: this process is the bot token's only poller")

    def alive(self) -> bool:
        """True while the lock's connection answers (so the lock is still ours)."""
        try:
            return self._connection is not None and self._one(self._connection, "SELECT 1") == 1
        except Exception:  # noqa: BLE001 - any failure means the session, and the lock, may be gone
            logger.warning("the bot lock's database connection failed", exc_info=True)
            return False

    async def watch(self, every_seconds: float = 10.0) -> None:
        """Return (raising BotLockLost) once the lock's connection stops answering."""
        while True:
            await asyncio.sleep(every_seconds)
            if not await asyncio.to_thread(self.alive):
                raise BotLockLost("the database connection holding the bot lock was lost; stopping, "
                                  "so that a restart takes the lock again or is refused")

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            # Unlocked before the session ends: the server ends a closed session a moment after
            # the client has gone, and a successor starting at once must find the lock free.
            self._one(connection, f"SELECT pg_advisory_unlock({self.key})")
        except Exception:  # noqa: BLE001 - a session already gone has released the lock too
            logger.debug("unlocking the bot lock failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    @staticmethod
    def _one(connection, sql: str):
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
            return cursor.fetchone()[0]
        finally:
            cursor.close()


def build_sender(settings) -> Application:
    """A PTB Application that never polls and handles no updates: the worker's `Bot` (with the
    same outbound pacing as the bot's) in a process without the bot role."""
    return (ApplicationBuilder().token(settings.telegram_bot_token.get_secret_value())
            .base_url(settings.telegram_api_base_url)
            .rate_limiter(outbound_limiter()).updater(None).build())
