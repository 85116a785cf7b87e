"""Donations: a channel's donate link opens a numeric keypad; the confirmed amount gets an invoice.

The amount typed so far lives in user_data as a string (persisted), and the conversation's
state is persisted too, so a restart in the middle of typing loses nothing. The 5-minute
timeout is checked against the time of the last key press stored beside the amount, which also
survives restarts (PTB's own conversation timeout does not).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler, filters

from telepay.bot.buy import deliver_invoice
from telepay.bot.common import Context, ack, db, keyboard, limits, now, services, show
from telepay.bot.limits import CONFIRM, INVOICE, allowed
from telepay.errors import TelePayError
from telepay.services.invoices import DONATE, DONATION_MAX, DONATION_MIN, offer, parse_donation, parse_payload

KEYPAD = 1
TIMEOUT = timedelta(minutes=5)
LIMITS = f"Donations can be from ${DONATION_MIN:,.2f} to ${DONATION_MAX:,.2f}."
EXPIRED = "This keypad is closed. Tap “Donate” in the channel to start again."
PAD = keyboard(
    [("1", "kp:1"), ("2", "kp:2"), ("3", "kp:3")],
    [("4", "kp:4"), ("5", "kp:5"), ("6", "kp:6")],
    [("7", "kp:7"), ("8", "kp:8"), ("9", "kp:9")],
    [(".", "kp:dot"), ("0", "kp:0"), ("⌫", "kp:back")],
    [("Clear", "kp:clr"), ("✖ Cancel", "kp:no")],
    [("✅ Confirm", "kp:ok")],
)


def keypad_text(title: str, amount: str, note: str = "") -> str:
    shown = f"${amount}" if amount else "—"
    return (f"💙 Donation to “{title}”\n\nAmount: {shown}\n\n"
            f"Type the amount in US dollars with the keypad. {LIMITS}" + (f"\n\n{note}" if note else ""))


def type_key(amount: str, key: str) -> tuple[str, str | None]:
    """The amount after pressing `key`, and why the press was refused (None if it was not)."""
    if key == "back":
        return amount[:-1], None
    if key == "clr":
        return "", None
    whole, dot, cents = amount.partition(".")
    if key == "dot":
        return (amount, None) if dot else ((amount or "0") + ".", None)
    if dot:
        if len(cents) >= 2:
            return amount, "At most two decimals (cents)."
        return amount + key, None
    if whole == "0":
        whole = ""  # no leading zeros
    if len(whole) >= 4:
        return amount, LIMITS
    return whole + key, None


async def begin(update: Update, context: Context) -> int:
    """A donate deep link: stores the channel and an empty amount, and shows the keypad."""
    try:
        key, target = parse_payload(context.args[0] if context.args else "")
        if target != DONATE:
            raise TelePayError("Sorry, I don't recognise this link.")
        found = await db(context, offer, key, DONATE)
    except TelePayError as error:
        await update.effective_message.reply_text(error.message)
        return ConversationHandler.END
    context.user_data["donation"] = {"key": key, "title": found.title, "amount": "",
                                     "touched": now(context).isoformat()}
    await update.effective_message.reply_text(keypad_text(found.title, ""), reply_markup=PAD)
    return KEYPAD


async def press(update: Update, context: Context) -> int:
    """A keypad key: edits the amount (kept in user_data) and the keypad message."""
    state = context.user_data.get("donation")
    key = update.callback_query.data.split(":", 1)[1]
    if state is None:
        await ack(update, EXPIRED)
        return ConversationHandler.END
    at = now(context)
    if at - datetime.fromisoformat(state["touched"]) > TIMEOUT:
        context.user_data.pop("donation", None)
        await ack(update)
        await show(update, "⌛ This donation keypad timed out after 5 minutes. Tap “Donate” in the channel "
                           "to start again.")
        return ConversationHandler.END
    state["touched"] = at.isoformat()
    if key == "no":
        context.user_data.pop("donation", None)
        await ack(update)
        await show(update, "Donation cancelled. Nothing was charged.")
        return ConversationHandler.END
    if key == "ok":
        return await confirm(update, context, state)
    amount, refused = type_key(state["amount"], key)
    if refused:
        await ack(update, refused)
        return KEYPAD
    state["amount"] = amount
    await ack(update)
    await show(update, keypad_text(state["title"], amount), PAD)
    return KEYPAD


async def confirm(update: Update, context: Context, state: dict) -> int:
    """Confirm: validates 4.99–9,999.99 and sends the invoice, or explains the limits."""
    if not await allowed(update, limits(context), CONFIRM):
        return KEYPAD
    try:
        amount = parse_donation(state["amount"])
    except TelePayError as error:
        await update.callback_query.answer(error.message, show_alert=True)
        await show(update, keypad_text(state["title"], state["amount"], "⚠️ " + error.message), PAD)
        return KEYPAD
    if not await allowed(update, limits(context), INVOICE):
        return KEYPAD  # the amount stays on the keypad for when they may try again
    context.user_data.pop("donation", None)
    await ack(update, "Creating your invoice…")
    await show(update, f"💙 Donation of ${amount:,.2f} to “{state['title']}” — creating your invoice…")
    user = update.effective_user
    invoices = services(context).invoices
    await deliver_invoice(update, context,
                          lambda: invoices.open_donation(user.id, user.username, state["key"], amount))
    return ConversationHandler.END


async def expired(update: Update, context: Context) -> None:
    """A key of a keypad whose conversation is over (confirmed, cancelled, timed out)."""
    await ack(update, EXPIRED)


def conversation() -> ConversationHandler:
    return ConversationHandler(
        entry_points=[CommandHandler("start", begin, filters=filters.Regex(r"^/start \S+-donate$"))],
        states={KEYPAD: [CallbackQueryHandler(press, pattern=r"^kp:")]},
        fallbacks=[],
        name="donate",
        persistent=True,
        allow_reentry=True,
    )
