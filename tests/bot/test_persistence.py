"""PTB persistence in PostgreSQL survives a new persistence object (a restart)."""

from __future__ import annotations

import asyncio

import pytest

from telepay.bot.persistence import SqlPersistence


def test_user_chat_and_conversation_state_round_trip(session_factory):
    async def scenario():
        first = SqlPersistence(session_factory)
        await first.update_user_data(42, {"amount": "12.5", "step": "keypad"})
        await first.update_chat_data(-100, {"posted": [1, 2]})
        await first.update_conversation("donate", (42, 42), 3)
        await first.update_conversation("donate", (7, 7), 1)
        await first.update_conversation("donate", (7, 7), None)  # conversation ended

        restarted = SqlPersistence(session_factory)
        return (await restarted.get_user_data(), await restarted.get_chat_data(),
                await restarted.get_conversations("donate"), await restarted.get_conversations("other"))

    users, chats, conversations, other = asyncio.run(scenario())
    assert users[42] == {"amount": "12.5", "step": "keypad"}
    assert users[999] == {}  # PTB expects a defaultdict
    assert chats[-100] == {"posted": [1, 2]}
    assert conversations == {(42, 42): 3}
    assert other == {}


def test_drop_user_data(session_factory):
    async def scenario():
        persistence = SqlPersistence(session_factory)
        await persistence.update_user_data(1, {"a": 1})
        await persistence.drop_user_data(1)
        return await persistence.get_user_data()

    assert 1 not in asyncio.run(scenario())


def test_values_that_are_not_json_are_refused_loudly(session_factory):
    from decimal import Decimal

    with pytest.raises(TypeError):
        asyncio.run(SqlPersistence(session_factory).update_user_data(1, {"amount": Decimal("1.5")}))


def test_changes_handed_over_together_are_written_in_one_transaction_in_order(session_factory, engine):
    """PTB hands over an interval's changes all at once: one batch, not a transaction each (they
    filled the threads the worker needs); a value written after a batch started lands after it."""
    from sqlalchemy import event

    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.split()[0].upper())

    async def scenario():
        persistence = SqlPersistence(session_factory)
        await persistence.update_user_data(5, {"gone": True})
        event.listen(engine, "before_cursor_execute", count)
        try:
            await asyncio.gather(*(persistence.update_user_data(n, {"n": n}) for n in range(100, 1300)),
                                 persistence.drop_user_data(5),
                                 *(persistence.update_conversation("donate", (n, n), 2) for n in range(300)))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        first = asyncio.ensure_future(persistence.update_user_data(7, {"v": 1}))
        await asyncio.sleep(0.01)  # that batch is being written
        await persistence.update_user_data(7, {"v": 2})
        await first
        return await persistence.get_user_data(), await persistence.get_conversations("donate")

    users, conversations = asyncio.run(scenario())
    assert statements.count("COMMIT") <= 1 and statements.count("INSERT") == 2  # 1,500 rows in slices of 1,000
    assert statements.count("DELETE") == 1
    assert all(users[n] == {"n": n} for n in range(100, 1300)) and 5 not in users and len(conversations) == 300
    assert users[7] == {"v": 2}
