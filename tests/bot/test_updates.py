"""Finding 4 (issue 13): people are served concurrently, each person's updates in order."""

from __future__ import annotations

import asyncio
import time

from telegram import Update

from telepay.bot.updates import PerUserUpdateProcessor, update_key


def message(update_id: int, user_id: int) -> Update:
    return Update.de_json({"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": "U"}, "text": "/start"}}, None)


def channel_post(update_id: int, chat_id: int) -> Update:
    return Update.de_json({"update_id": update_id, "channel_post": {
        "message_id": update_id, "date": 0, "chat": {"id": chat_id, "type": "channel", "title": "C"},
        "text": "hello"}}, None)


def test_updates_are_keyed_by_user_else_by_chat():
    assert update_key(message(1, 42)) == ("user", 42)
    assert update_key(channel_post(2, -100)) == ("chat", -100)
    assert update_key("not an update") is None


def test_finding_4_a_slow_update_blocks_only_its_own_sender():
    """User 1's first update takes 1 s (a slow provider); user 2's updates finish meanwhile, and
    user 1's second update waits for the first: their order is kept."""
    done: list[tuple[str, float]] = []

    async def work(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        done.append((name, time.monotonic()))

    async def run() -> float:
        processor = PerUserUpdateProcessor(max_concurrent_updates=64)
        started = time.monotonic()
        await asyncio.gather(
            processor.process_update(message(1, 1), work("slow-1", 1.0)),
            processor.process_update(message(2, 1), work("after-slow-1", 0.0)),
            processor.process_update(message(3, 2), work("other-2a", 0.01)),
            processor.process_update(message(4, 2), work("other-2b", 0.01)),
        )
        return started

    started = asyncio.run(run())
    names = [name for name, _ in done]
    assert names.index("slow-1") < names.index("after-slow-1")          # one person: in order
    assert names.index("other-2a") < names.index("other-2b")
    finished = dict(done)
    assert finished["other-2b"] - started < 0.5                          # nobody else waited
    assert finished["after-slow-1"] - started >= 1.0


def test_a_flood_from_one_person_is_cut_at_the_backlog_and_forgets_the_key():
    ran: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(0.01)
        ran.append(n)

    async def run(processor: PerUserUpdateProcessor) -> None:
        await asyncio.gather(*(processor.process_update(message(n, 7), work(n)) for n in range(10)),
                             processor.process_update(channel_post(99, -5), work(99)))

    processor = PerUserUpdateProcessor(max_concurrent_updates=64, backlog=4)
    asyncio.run(run(processor))
    assert sorted(ran) == [0, 1, 2, 3, 99]
    assert [n for n in ran if n != 99] == [0, 1, 2, 3]
    assert processor._locks == {} and processor._waiting == {}
