"""/start, /help and the main menu: the first thing anyone sees, and where deep links land."""

from __future__ import annotations

from telegram import Update

from telepay.bot import buy
from telepay.bot.common import Context, ack, db, keyboard, show
from telepay.services.channels import touch_owner

WELCOME = (
    "Welcome to TelePay! 👋\n\n"
    "Channel owners: sell access to your private channel and take donations in Telegram Stars "
    "and crypto, paid out automatically to your own wallet.\n"
    "Subscribers: tap a subscribe button in a channel to get started.\n\n"
    "Send /help to see what I can do."
)

HELP = (
    "Here is what I can do:\n"
    "/start – the main menu\n"
    "/mysubs – your subscriptions, with renew buttons\n"
    "/paysupport – a problem with a payment\n"
    "/privacy – what we keep about you · /terms – the terms\n"
    "/cancel – stop what you are doing\n"
    "/help – this message\n\n"
    "To subscribe to a channel, tap one of its subscribe buttons and pay in Telegram Stars (or in "
    "crypto where the channel takes it); your personal invite arrives here as soon as the payment "
    "is confirmed.\n\n"
    "Channel owners: /start → “Add channels” to register a public and a private channel, then "
    "set prices and your payout wallet."
)

PAID = ("Thank you! 🙏 As soon as the payment is confirmed on the blockchain I'll send you a "
        "message here — for a subscription, with your personal invite link.")

MENU = keyboard(
    [("➕ Add channels", "menu:add"), ("📋 My channels", "menu:channels")],
    [("🎟 My subscriptions", "menu:subs"), ("❓ Help", "menu:help")],
)


async def start(update: Update, context: Context) -> None:
    """Shows the menu, or follows a deep link (a tier of a channel, or a return from paying)."""
    await db(context, touch_owner, update.effective_user.id, context.services.clock.now())
    payload = context.args[0] if context.args else None
    if payload == "paid":
        await update.effective_message.reply_text(PAID)
    elif payload:
        await buy.open_link(update, context, payload)
    else:
        await update.effective_message.reply_text(WELCOME, reply_markup=MENU)


async def help_command(update: Update, context: Context) -> None:
    """Lists the commands."""
    await update.effective_message.reply_text(HELP)


async def menu(update: Update, context: Context) -> None:
    """The menu's buttons that are not conversations: home and help."""
    await ack(update)
    if update.callback_query.data == "menu:help":
        await show(update, HELP, keyboard([("« Menu", "menu:home")]))
    else:
        await show(update, WELCOME, MENU)


async def stale_button(update: Update, context: Context) -> None:
    """A button this version no longer knows (or a message from long ago)."""
    await ack(update, "This button has expired. Send /start to begin again.")


async def unknown_text(update: Update, context: Context) -> None:
    """Free text nobody asked for."""
    await update.effective_message.reply_text("I didn't catch that. Send /start for the menu or /help.")
