"""Donations: a channel's donate link opens a numeric keypad; the confirmed amount gets an invoice.

The amount typed so far lives in user_data as a string (persisted), and the conversation's
state is persisted too, so a restart in the middle of typing loses nothing. The 5-minute
timeout is checked against the time of the last key press stored beside the amount, which also
survives restarts (PTB's own conversation timeout does not).

The keypad counts US dollars (a crypto invoice) or whole Telegram Stars (an XTR invoice), as
the channel takes them; where it takes both, one key switches. In STARS_ONLY mode, or where the
owner turned crypto off, it counts Stars only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler, filters

from telepay.bot import stars
from telepay.bot.buy import deliver_invoice
from telepay.bot.common import Context, ack, db, keyboard, limits, now, show
from telepay.bot.limits import CONFIRM, INVOICE, allowed
from telepay.errors import TelePayError
from telepay.models import PaymentMethod
from telepay.services.stars.pricing import MAX_STARS
from telepay.services.stars.texts import DONATION_LIMITS as STARS_LIMITS
from telepay.services.invoices import DONATE, DONATION_MAX, DONATION_MIN, offer, parse_donation, parse_payload

KEYPAD = 1
TIMEOUT = timedelta(minutes=5)
LIMITS = f"Donations can be from ${DONATION_MIN:,.2f} to ${DONATION_MAX:,.2f}."
EXPIRED = "This keypad is closed. Tap “Donate” in the channel to start again."
USD, STARS = "usd", "stars"
_DIGITS = (
    [("1", "kp:1"), ("2", "kp:2"), ("3", "kp:3")],
    [("4", "kp:4"), ("5", "kp:5"), ("6", "kp:6")],
    [("7", "kp:7"), ("8", "kp:8"), ("9", "kp:9")],
    [(".", "kp:dot"), ("0", "kp:0"), ("⌫", "kp:back")],
    [("Clear", "kp:clr"), ("✖ Cancel", "kp:no")],
    [("✅ Confirm", "kp:ok")],
)
PAD = keyboard(*_DIGITS)
SWITCH = {USD: ("⭐ Donate in Telegram Stars instead", "kp:unit"),
          STARS: ("$ Donate in dollars (crypto) instead", "kp:unit")}


def pad(state: dict):
    """The keypad, with the key that switches unit where the channel takes both."""
    unit = state.get("unit", USD)
    return keyboard(*_DIGITS, [SWITCH[unit]]) if state.get("switch") else PAD


def keypad_text(title: str, amount: str, note: str = "", unit: str = USD) -> str:
    if unit == STARS:
        shown = f"⭐ {amount}" if amount else "—"
        how = f"Type the amount in Telegram Stars with the keypad. {STARS_LIMITS}"
    else:
        shown = f"${amount}" if amount else "—"
        how = f"Type the amount in US dollars with the keypad. {LIMITS}"
    return f"💙 Donation to “{title}”\n\nAmount: {shown}\n\n{how}" + (f"\n\n{note}" if note else "")


def type_stars(amount: str, key: str) -> tuple[str, str | None]:
    """`type_key` for whole Stars: no decimals, at most five digits."""
    if key in ("back", "clr"):
        return type_key(amount, key)
    if key == "dot":
        return amount, "Stars are whole numbers."
    if len(amount) >= 5:
        return amount, STARS_LIMITS
    return (amount if amount != "0" else "") + key, None


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
        methods = await db(context, context.services.stars.checkout.methods, found.channel_id)
    except TelePayError as error:
        await update.effective_message.reply_text(error.message)
        return ConversationHandler.END
    unit = USD if PaymentMethod.CRYPTO in methods else STARS
    state = {"key": key, "title": found.title, "amount": "", "touched": now(context).isoformat(),
             "unit": unit, "switch": len(methods) == 2}
    context.user_data["donation"] = state
    await update.effective_message.reply_text(keypad_text(found.title, "", unit=unit), reply_markup=pad(state))
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
    unit = state.get("unit", USD)
    if key == "unit" and state.get("switch"):
        state["unit"], state["amount"] = (STARS if unit == USD else USD), ""
        await ack(update)
        await show(update, keypad_text(state["title"], "", unit=state["unit"]), pad(state))
        return KEYPAD
    amount, refused = (type_stars if unit == STARS else type_key)(state["amount"], key)
    if refused:
        await ack(update, refused)
        return KEYPAD
    state["amount"] = amount
    await ack(update)
    await show(update, keypad_text(state["title"], amount, unit=unit), pad(state))
    return KEYPAD


async def confirm(update: Update, context: Context, state: dict) -> int:
    """Confirm: validates 4.99–9,999.99 and sends the invoice, or explains the limits."""
    if not await allowed(update, limits(context), CONFIRM):
        return KEYPAD
    if state.get("unit", USD) == STARS:
        return await confirm_stars(update, context, state)
    try:
        amount = parse_donation(state["amount"])
    except TelePayError as error:
        await update.callback_query.answer(error.message, show_alert=True)
        await show(update, keypad_text(state["title"], state["amount"], "⚠️ " + error.message), pad(state))
        return KEYPAD
    if not await allowed(update, limits(context), INVOICE):
        return KEYPAD  # the amount stays on the keypad for when they may try again
    context.user_data.pop("donation", None)
    await ack(update, "Creating your invoice…")
    await show(update, f"💙 Donation of ${amount:,.2f} to “{state['title']}” — creating your invoice…")
    user = update.effective_user
    invoices = context.services.invoices
    await deliver_invoice(update, context,
                          lambda: invoices.open_donation(user.id, user.username, state["key"], amount))
    return ConversationHandler.END


async def confirm_stars(update: Update, context: Context, state: dict) -> int:
    """Confirm in Stars: 1-10,000 whole Stars get an XTR invoice, or the limits are explained."""
    amount = int(state["amount"] or 0)
    if not 1 <= amount <= MAX_STARS:
        await update.callback_query.answer(STARS_LIMITS, show_alert=True)
        await show(update, keypad_text(state["title"], state["amount"], "⚠️ " + STARS_LIMITS, STARS), pad(state))
        return KEYPAD
    if not await allowed(update, limits(context), INVOICE):
        return KEYPAD
    context.user_data.pop("donation", None)
    await ack(update)
    await show(update, f"💙 Donation of ⭐ {amount:,} Stars to “{state['title']}” — your invoice is below.")
    await stars.donate(update, context, state["key"], amount)
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
