"""The PTB Application: wiring of every handler in one place, and the one error handler."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, CommandHandler, ContextTypes

from telepay.bot import start
from telepay.bot.persistence import SqlPersistence

logger = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on our side. Please try again in a moment."


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Logs the failure with its stack trace, then tells the user something short and kind."""
    logger.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat and update.effective_chat.type == "private":
        try:
            await context.bot.send_message(update.effective_chat.id, SORRY)
        except Exception:  # noqa: BLE001 - the user may have blocked us; the log has the cause
            logger.warning("could not tell the user about the error", exc_info=True)


def build_application(settings: Any, services: Any, session_factory, post_init=None, post_stop=None,
                      post_shutdown=None) -> Application:
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .base_url(settings.telegram_api_base_url)
        .persistence(SqlPersistence(session_factory))
        # Retries 429s after Telegram's retry_after and keeps under the overall and group limits.
        .rate_limiter(AIORateLimiter(max_retries=3))
    )
    for hook, fn in (("post_init", post_init), ("post_stop", post_stop), ("post_shutdown", post_shutdown)):
        if fn is not None:
            getattr(builder, hook)(fn)
    application = builder.build()
    application.bot_data["services"] = services
    application.add_handler(CommandHandler("start", start.start))
    application.add_handler(CommandHandler("help", start.help_command))
    application.add_error_handler(on_error)
    return application
