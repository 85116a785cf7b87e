"""What every handler module shares: the typed context, database work off the loop, showing errors.

Handlers stay thin: they read the update, call a service through `db` (pg8000 blocks, so the
work runs in a thread inside one transaction) and render. Domain errors become a short message
to the user; anything else reaches the application's error handler.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Callable, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telepay.bot.context import TelePayContext
from telepay.bot.limits import UserLimits
from telepay.errors import TelePayError
from telepay.wiring import Services

T = TypeVar("T")
Context = TelePayContext


async def db(context: Context, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(session, *args)` in a thread, in one transaction that commits if it returns."""
    factory = context.services.session_factory

    def work() -> T:
        with factory.begin() as session:
            return fn(session, *args)

    return await asyncio.to_thread(work)


async def provider(context: Context, fn: Callable[[], T]) -> T:
    """Run a blocking call to the payment provider in the provider's own threads."""
    return await asyncio.get_running_loop().run_in_executor(context.provider_pool, fn)


def limits(context: Context) -> UserLimits:
    return context.limits


def services(context: Context) -> Services:
    """The same as `context.services`, for call sites that take the context as an argument."""
    return context.services


def now(context: Context) -> datetime:
    return context.services.clock.now()


def keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    """Callback-button rows from (label, callback_data) pairs."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in row]
                                 for row in rows if row])


async def show(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Edit the pressed message in place, or send a new one when there is nothing to edit."""
    query = update.callback_query
    if query is not None and query.message is not None:
        try:
            await query.edit_message_text(text, reply_markup=markup)
            return
        except BadRequest as error:
            if "not modified" in error.message.lower():
                return
            # Too old to edit, or gone: send a fresh message instead.
    await update.effective_chat.send_message(text, reply_markup=markup)


async def tell_error(update: Update, error: TelePayError, markup: InlineKeyboardMarkup | None = None) -> None:
    """A domain error as an alert on the pressed button, or as a message when typed or long."""
    query = update.callback_query
    if query is not None:
        try:
            await query.answer(error.message[:200], show_alert=True)
            if len(error.message) <= 200 and markup is None:
                return
        except BadRequest:
            pass  # already answered: say it in the chat instead
    await update.effective_chat.send_message(error.message, reply_markup=markup)


async def ack(update: Update, text: str | None = None) -> None:
    """Answer a button press (Telegram shows a spinner until we do); harmless if already answered."""
    if update.callback_query is not None:
        try:
            await update.callback_query.answer(text)
        except BadRequest:
            pass
