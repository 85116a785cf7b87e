"""The PTB Application: wiring of every handler in one place, and the one error handler.

Order matters within the group: the two conversations come first (the donation keypad, then
the owner's registration and settings form), then plain commands and buttons, then catch-alls
for stale buttons and stray text. Every callback pattern here is restart-safe: the data names
what it acts on.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from telegram import Update
from telegram.ext import (
    Application, ApplicationBuilder, CallbackQueryHandler, CommandHandler, ConversationHandler, MessageHandler, filters,
)
from telegram.warnings import PTBUserWarning

from telepay.bot import access, buy, channels_menu, donate, register, setup_form, stars, start, support
from telepay.bot.common import Context, tell_error
from telepay.bot.context import CONTEXT_TYPES, TelePayContext, install, provider_pool
from telepay.bot.limits import UserLimits
from telepay.bot.persistence import SqlPersistence
from telepay.bot.ratelimit import outbound_limiter
from telepay.bot.updates import PerUserUpdateProcessor
from telepay.config import Settings
from telepay.errors import TelePayError
from telepay.ops.polling import PollWatch, RecordingRequest
from telepay.services.rights import ChannelRights
from telepay.wiring import Services

logger = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on our side. Please try again in a moment."
# Threads for calls to the payment provider only: a slow provider fills these, never the
# threads every handler's database work runs in.
PROVIDER_THREADS = 32


async def on_error(update: object, context: Context) -> None:
    """The one place failures become answers. A domain error (`TelePayError`: not yours, not
    found, invalid) is said to the user as it is; anything else is logged with its stack trace
    and the user gets something short and kind."""
    if isinstance(context.error, TelePayError) and isinstance(update, Update) and update.effective_chat:
        try:
            await tell_error(update, context.error)
        except Exception:  # noqa: BLE001 - the user may have blocked us
            logger.warning("could not tell the user about %s", context.error.code, exc_info=True)
        return
    logger.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat and update.effective_chat.type == "private":
        try:
            await context.bot.send_message(update.effective_chat.id, SORRY)
        except Exception:  # noqa: BLE001 - the user may have blocked us; the log has the cause
            logger.warning("could not tell the user about the error", exc_info=True)


def build_application(settings: Settings, services: Services, session_factory: sessionmaker[Session],
                      watch: PollWatch | None = None) -> Application[Any, Any, Any, Any, Any, Any]:
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .persistence(SqlPersistence(session_factory))
        .context_types(CONTEXT_TYPES)
        # Retries 429s after Telegram's retry_after and keeps messages under the overall and group limits.
        .rate_limiter(outbound_limiter())
        # Different people at once, each person's updates in order (see telepay.bot.updates).
        .concurrent_updates(PerUserUpdateProcessor())
        .post_shutdown(_close_provider_pool)
    )
    if watch is not None:  # PTB's own transports (pool sizes as its defaults), recording answers
        builder = (builder.request(RecordingRequest(watch, polls=False, connection_pool_size=256))
                   .get_updates_request(RecordingRequest(watch, polls=True)))
    application = builder.build()
    install(application, services, UserLimits(), ThreadPoolExecutor(PROVIDER_THREADS, thread_name_prefix="provider"),
            ChannelRights(session_factory, services.jobs, services.clock, application.bot))
    add_handlers(application)
    application.add_error_handler(on_error)
    return application


async def _close_provider_pool(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    provider_pool(application).shutdown(wait=False, cancel_futures=True)


async def _start_over(update: Update, context: Context) -> int:
    """/start in the middle of the owner's flow: leave the flow and do what /start does."""
    context.user_data.pop("awaiting", None)
    context.user_data.pop("register", None)
    await start.start(update, context)
    return ConversationHandler.END


def owner_conversation() -> ConversationHandler[TelePayContext]:
    private = filters.ChatType.PRIVATE
    typed = private & filters.TEXT & ~filters.COMMAND
    channel = private & ((filters.TEXT & ~filters.COMMAND) | filters.FORWARDED)
    form_button: CallbackQueryHandler[TelePayContext, object] = CallbackQueryHandler(
        setup_form.button, pattern=r"^cfg:\d+")
    return ConversationHandler(
        entry_points=[CallbackQueryHandler(register.begin, pattern=r"^menu:add$"),
                      CommandHandler("add", register.begin), form_button],
        states={
            register.REG_OPEN: [MessageHandler(channel, register.receive_open)],
            register.REG_CLOSED: [MessageHandler(channel, register.receive_closed)],
            setup_form.FORM: [form_button],
            setup_form.INPUT: [MessageHandler(typed, setup_form.answer), form_button],
        },
        fallbacks=[CommandHandler("cancel", register.cancel),
                   CallbackQueryHandler(register.cancel, pattern=r"^reg:cancel$"),
                   CommandHandler("start", _start_over)],
        name="owner",
        persistent=True,
        allow_reentry=True,
    )


def add_handlers(application: Application) -> None:
    # Our conversations key on (chat, user) and take buttons by their data, which PTB warns
    # about for per_message=False; that is the intended design, not an oversight.
    warnings.filterwarnings("ignore", message=".*per_message.*", category=PTBUserWarning)
    application.add_handlers([
        *stars.handlers(),  # payments first: a successful_payment is a private message too
        donate.conversation(),
        *support.handlers(),  # /paysupport (a conversation), /privacy, /terms
        owner_conversation(),
        CommandHandler("start", start.start),
        CommandHandler("help", start.help_command),
        CommandHandler("mysubs", buy.my_subscriptions),
        CommandHandler("cancel", register.cancel),
        CallbackQueryHandler(start.menu, pattern=r"^menu:(home|help)$"),
        CallbackQueryHandler(channels_menu.list_channels, pattern=r"^menu:channels$"),
        CallbackQueryHandler(buy.my_subscriptions, pattern=r"^menu:subs$"),
        CallbackQueryHandler(channels_menu.channel_view, pattern=r"^ch:\d+$"),
        CallbackQueryHandler(channels_menu.post_now, pattern=r"^ch:\d+:post$"),
        CallbackQueryHandler(channels_menu.summary, pattern=r"^ch:\d+:sum$"),
        CallbackQueryHandler(buy.pay, pattern=r"^pay:[A-Za-z0-9]{6,16}:\d{1,2}$"),
        CallbackQueryHandler(buy.retry, pattern=r"^inv:[0-9a-f-]{36}$"),
        CallbackQueryHandler(buy.renew, pattern=r"^buy:[A-Za-z0-9]{6,16}$"),
        CallbackQueryHandler(donate.expired, pattern=r"^kp:"),
        CallbackQueryHandler(register.cancel, pattern=r"^reg:cancel$"),
        *access.handlers(),  # join requests, joins, "Get my invite"
        CallbackQueryHandler(start.stale_button),
        MessageHandler(filters.ChatType.PRIVATE & ~filters.COMMAND, start.unknown_text),
    ])
