"""A real python-telegram-bot Application against the sandbox, polling in the test's own loop.

People act from worker threads (`asyncio.to_thread`) because their methods block, while the
Application needs the event loop to keep running.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import Forbidden, RetryAfter
from telegram.ext import (
    Application, ApplicationBuilder, CallbackQueryHandler, ChatJoinRequestHandler, CommandHandler,
    ContextTypes,
)

from telepay_sandbox.telegram import RateLimits, TelegramSandbox

TOKEN = "123456:ptb-sandbox-test"
WELCOME = "Welcome"


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet, echo the deep-link payload, and offer one button."""
    payload = " ".join(context.args)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Gold", callback_data="tier:1")]])
    await update.message.reply_text(WELCOME + (f" ({payload})" if payload else ""), reply_markup=keyboard)


async def choose(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer the press and turn the offer into a confirmation."""
    query = update.callback_query
    await query.answer("Creating invoice")
    await query.edit_message_text(f"You chose {query.data}")


async def join_request(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Let everyone in who asks."""
    await update.chat_join_request.approve()


def build(sandbox: TelegramSandbox) -> Application:
    application = ApplicationBuilder().token(sandbox.token).base_url(sandbox.base_url).build()
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(choose))
    application.add_handler(ChatJoinRequestHandler(join_request))
    return application


async def _run(sandbox: TelegramSandbox, scenario) -> None:
    application = build(sandbox)
    await application.initialize()
    await application.start()
    await application.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=Update.ALL_TYPES)
    try:
        await scenario(application)
    finally:
        started = time.monotonic()
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
        assert time.monotonic() - started < 3, "shutdown should not wait out a long poll"


def test_start_button_and_edit_with_a_real_application():
    async def scenario(application: Application) -> None:
        alice = sandbox.create_user("Alice", "alice")
        await asyncio.to_thread(alice.open_deep_link, f"https://t.me/{sandbox.bot.username}?start=ch1")
        welcome = await asyncio.to_thread(alice.wait_for_message)
        assert welcome.text == "Welcome (ch1)"
        assert welcome.buttons == [{"text": "Gold", "callback_data": "tier:1"}]

        query = await asyncio.to_thread(alice.press, welcome, text="Gold")
        assert (await asyncio.to_thread(query.wait_for_answer))["text"] == "Creating invoice"
        edit = await asyncio.to_thread(sandbox.wait_for_call, "editMessageText")
        assert edit.ok and edit.params["message_id"] == welcome.message_id
        assert welcome.text == "You chose tier:1" and welcome.buttons == []

    with TelegramSandbox(token=TOKEN, bot_username="ptb_test_bot", rate_limits=RateLimits.off()) as sandbox:
        asyncio.run(_run(sandbox, scenario))
        assert [c.method for c in sandbox.calls[:2]] == ["getMe", "deleteWebhook"]
        assert sandbox.pending_updates == []  # PTB confirmed everything on its way out
        assert sandbox.errors == []


def test_join_request_approved_by_a_real_application():
    async def scenario(application: Application) -> None:
        owner = sandbox.create_user("Owner")
        channel = sandbox.create_channel("Closed", creator=owner)
        sandbox.add_admin(channel, sandbox.bot)
        link = await application.bot.create_chat_invite_link(channel.id, creates_join_request=True)
        bob = sandbox.create_user("Bob")
        assert await asyncio.to_thread(bob.join, link.invite_link) == "requested"
        await asyncio.to_thread(sandbox.wait_for_call, "approveChatJoinRequest")
        assert bob.status_in(channel) == "member"
        member = await application.bot.get_chat_member(channel.id, bob.id)
        assert member.status == "member"

    with TelegramSandbox(token=TOKEN, rate_limits=RateLimits.off()) as sandbox:
        asyncio.run(_run(sandbox, scenario))
        assert sandbox.errors == []


# PTB itself reads RetryAfter.retry_after while building the error, which warns in 22.x.
@pytest.mark.filterwarnings("ignore:Deprecated since version v22.2")
def test_ptb_sees_telegram_errors_as_its_own_exceptions():
    async def scenario(application: Application) -> None:
        carol = sandbox.create_user("Carol")
        await asyncio.to_thread(carol.command, "start")
        await asyncio.to_thread(carol.wait_for_message)
        await asyncio.to_thread(carol.block_bot)
        try:
            await application.bot.send_message(carol.id, "Your subscription ends soon")
        except Forbidden as error:
            assert error.message == "Forbidden: bot was blocked by the user"
        else:
            raise AssertionError("a blocked bot must be refused")
        sandbox.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
        try:
            await application.bot.send_message(sandbox.bot.id, "x")
        except RetryAfter as error:
            assert error.message == "Flood control exceeded. Retry in 3 seconds"
        else:
            raise AssertionError("the injected 429 must surface")

    with TelegramSandbox(token=TOKEN, rate_limits=RateLimits.off()) as sandbox:
        asyncio.run(_run(sandbox, scenario))
        assert sandbox.errors == []


def test_base_url_with_a_token_placeholder():
    async def get_me() -> str:
        application = ApplicationBuilder().token(TOKEN).base_url(sandbox.base_url + "{token}").build()
        async with application:
            return application.bot.username

    with TelegramSandbox(token=TOKEN, bot_username="placeholder_bot") as sandbox:
        assert asyncio.run(get_me()) == "placeholder_bot"
