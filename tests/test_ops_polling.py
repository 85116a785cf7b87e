"""The poll supervisor keeps saying what a refused token means when the restart itself is refused."""

from __future__ import annotations

import asyncio

from telegram.error import InvalidToken

from telepay.ops.polling import PollSupervisor, PollWatch


def test_a_restart_refused_for_the_token_still_names_the_token():
    watch = PollWatch()
    watch.record(401)

    async def restart():
        raise InvalidToken("Unauthorized")

    asyncio.run(PollSupervisor(watch, restart)._restart_once())
    assert watch.restarts == 1 and watch.failures == 2
    assert watch.last_error.startswith("polling could not be restarted: Telegram refuses the bot token")
    assert "InvalidToken: Unauthorized" in watch.last_error
