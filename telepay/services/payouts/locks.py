"""PostgreSQL advisory locks held outside any transaction, so chain and ChangeNOW calls can run
while the lock is held (a transaction must never stay open across an external call).

The lock lives on a dedicated pooled connection in autocommit mode. A process that dies drops
its connection, and PostgreSQL releases the lock with it: a crash never leaves a lock behind.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Engine, text


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (e.g. "sender:0xabc...")."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def advisory_lock(engine: Engine, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the session-level advisory lock `name`; yields False if `wait` is off and it is taken."""
    key = lock_key(name)
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        if wait:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            got = True
        else:
            got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        try:
            yield got
        finally:
            if got:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                except Exception:
                    # A connection that could not unlock must not go back to the pool holding it.
                    connection.invalidate()
                    raise
    finally:
        connection.close()
