"""`--roles` parsing and the one-poller-per-token lock, against the real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from telepay_sandbox.waiting import until
from telepay.roles import BotLock, BotLockHeld, lock_key, parse_roles

TOKEN = "123:roles-token"


def test_roles_parse_any_subset_and_refuse_the_rest():
    assert parse_roles("bot,api,worker") == {"bot", "api", "worker"}
    assert parse_roles(" worker , api ") == {"api", "worker"}
    with pytest.raises(ValueError, match="unknown role poller"):
        parse_roles("api,poller")
    with pytest.raises(ValueError, match="no role"):
        parse_roles(" , ")


def test_one_bot_lock_per_token_until_its_holder_lets_go(engine):
    first, second = BotLock(engine, TOKEN), BotLock(engine, TOKEN)
    first.acquire()
    try:
        with pytest.raises(BotLockHeld, match="--roles api,worker"):
            second.acquire()
        other_bot = BotLock(engine, "456:another-token")
        other_bot.acquire()  # another token is another bot: its own lock
        other_bot.release()
        assert first.alive()
    finally:
        first.release()
    second.acquire()
    second.release()


def test_a_holder_whose_session_dies_loses_the_lock_and_knows_it(engine):
    holder = BotLock(engine, TOKEN)
    holder.acquire()
    try:
        held = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                    "AND ((classid::bigint << 32) | objid::bigint) = :key")
        key = {"key": holder.key}
        with engine.begin() as connection:  # the server ends the session (a failover, an operator)
            [pid] = connection.execute(held, key).scalars().all()
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()

        def gone():
            with engine.connect() as connection:
                return not connection.execute(held, key).first()

        until(gone, "the ended session's lock released")
        assert not holder.alive()
        successor = BotLock(engine, TOKEN)
        successor.acquire()  # the lock went with the session
        successor.release()
    finally:
        holder.release()


def test_lock_keys_do_not_reveal_the_token():
    assert lock_key("bot", TOKEN) == lock_key("bot", TOKEN) != lock_key("bot", TOKEN + "x")
    assert str(lock_key("bot", TOKEN)) not in TOKEN
