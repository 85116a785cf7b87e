"""/start and /help: the first thing anyone sees."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

WELCOME = (
    "Welcome to TelePay! 👋\n\n"
    "Channel owners: sell access to your private channel and take donations in crypto, "
    "paid out automatically to your own wallet.\n"
    "Subscribers: tap a subscribe button in a channel to get started.\n\n"
    "Send /help to see what I can do."
)

HELP = (
    "Here is what I can do:\n"
    "/start – the main menu\n"
    "/help – this message\n\n"
    "To subscribe to a channel, tap one of its subscribe buttons; I will send you an invoice "
    "here, and your personal invite as soon as the payment is confirmed."
)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greets the user and points at /help."""
    await update.effective_message.reply_text(WELCOME)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Lists the commands."""
    await update.effective_message.reply_text(HELP)
