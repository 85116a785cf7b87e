"""Buyers: the tier card a deep link opens, "Pay", the invoice message, retries, /mysubs and renewals.

Buttons carry the channel key and the tier number (`pay:<key>:<n>`), never a price, so they
work after a restart and cannot be edited into a cheaper one.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update, WebAppInfo

from telepay.bot.common import Context, ack, db, keyboard, limits, now, provider, services, show, tell_error
from telepay.bot.limits import INVOICE, allowed
from telepay.errors import TelePayError
from telepay.models import Channel, Subscription, SubscriptionStatus
from telepay.services.invoices import (
    DONATE, UNKNOWN_LINK, InvoiceView, Offer, InvoiceUnavailable, channel_offers, offer, parse_payload,
)

logger = logging.getLogger(__name__)


def tier_card(found: Offer) -> tuple[str, InlineKeyboardMarkup]:
    text = (f"🔒 Subscription to “{found.closed_title}”\n\n"
            f"Price: ${found.price_usd:,.2f}\nDuration: {found.days} days\n\n"
            "You pay in crypto through NOWPayments. Your personal invite link arrives here as soon "
            "as the payment is confirmed.")
    return text, keyboard([(f"💳 Pay ${found.price_usd:,.2f}", f"pay:{found.key}:{found.number}")])


async def open_link(update: Update, context: Context, payload: str) -> None:
    """A channel's subscribe link: shows the tier's card from the database (never from the link)."""
    try:
        key, target = parse_payload(payload)
        if target == DONATE:
            raise TelePayError(UNKNOWN_LINK)  # donate links are the donation conversation's
        found = await db(context, offer, key, target)
    except TelePayError as error:
        await update.effective_message.reply_text(error.message)
        return
    text, markup = tier_card(found)
    await update.effective_message.reply_text(text, reply_markup=markup)


def invoice_markup(view: InvoiceView) -> InlineKeyboardMarkup:
    """A Web App button where Telegram allows one (HTTPS), and always a plain link as fallback."""
    rows = []
    if view.url.startswith("https://"):
        rows.append([InlineKeyboardButton("💳 Pay now", web_app=WebAppInfo(view.url))])
        rows.append([InlineKeyboardButton("Open in browser", url=view.url)])
    else:
        rows.append([InlineKeyboardButton("💳 Pay now", url=view.url)])
    return InlineKeyboardMarkup(rows)


def invoice_text(view: InvoiceView) -> str:
    what = (f"{view.days} days of “{view.title}”" if view.days else f"a donation to “{view.title}”")
    return (f"🧾 Your invoice: ${view.price_usd:,.2f} for {what}.\n\n"
            "Tap “Pay now”, choose a coin and send the exact amount shown. The invoice is valid "
            "for 20 minutes.")


async def deliver_invoice(update: Update, context: Context, create) -> None:
    """Run `create` (a blocking provider call) and send the invoice, or an apology with a retry.
    The provider runs in its own threads: however slow it is, other people's updates go on."""
    try:
        view = await provider(context, create)
    except InvoiceUnavailable as error:
        await update.effective_chat.send_message(
            error.message, reply_markup=keyboard([("🔄 Try again", f"inv:{error.invoice_id}")]))
        return
    except TelePayError as error:
        await tell_error(update, error)
        return
    await update.effective_chat.send_message(invoice_text(view), reply_markup=invoice_markup(view))


async def pay(update: Update, context: Context) -> None:
    """`pay:<key>:<n>`: opens (or re-opens) the buyer's invoice for that tier."""
    _, key, number = update.callback_query.data.split(":")
    if not await allowed(update, limits(context), INVOICE):
        return
    await ack(update, "Creating your invoice…")
    user = update.effective_user
    invoices = services(context).invoices
    await deliver_invoice(update, context,
                          lambda: invoices.open_subscription(user.id, user.username, key, int(number)))


async def retry(update: Update, context: Context) -> None:
    """`inv:<invoice id>`: asks the provider again for an invoice it refused."""
    invoice_id = update.callback_query.data.split(":", 1)[1]
    if not await allowed(update, limits(context), INVOICE):
        return
    await ack(update, "Trying again…")
    invoices = services(context).invoices
    await deliver_invoice(update, context, lambda: invoices.retry(invoice_id, update.effective_user.id))


async def renew(update: Update, context: Context) -> None:
    """`buy:<key>`: the channel's current tiers, each with a Pay button."""
    key = update.callback_query.data.split(":", 1)[1]
    try:
        offers = await db(context, channel_offers, key)
    except TelePayError as error:
        await tell_error(update, error)
        return
    await ack(update)
    if not offers:
        await show(update, "This channel has no subscription options right now.")
        return
    lines = [f"Renew “{offers[0].closed_title}” — pick a plan:"]
    rows = [[(f"${o.price_usd:,.2f} · {o.days} days", f"pay:{key}:{o.number}")] for o in offers]
    await update.effective_chat.send_message("\n".join(lines), reply_markup=keyboard(*rows))


def _active_subscriptions(session, user_id: int, at):
    rows = session.execute(
        select(Subscription.expires_at, Channel.closed_title, Channel.key)
        .join(Channel, Channel.id == Subscription.channel_id)
        .where(Subscription.user_id == user_id, Subscription.status == SubscriptionStatus.ACTIVE,
               Subscription.expires_at > at)
        .order_by(Subscription.expires_at)).all()
    return [tuple(row) for row in rows]


async def my_subscriptions(update: Update, context: Context) -> None:
    """/mysubs (or the menu button): active subscriptions with expiry dates and Renew buttons."""
    await ack(update)
    subs = await db(context, _active_subscriptions, update.effective_user.id, now(context))
    if not subs:
        await show(update, "You have no active subscriptions yet. Tap a subscribe button in a channel "
                           "to get one.")
        return
    lines = ["🎟 Your subscriptions:\n"]
    lines += [f"• {title} — until {expires:%d %b %Y, %H:%M} UTC" for expires, title, _ in subs]
    rows = [[(f"🔄 Renew {title[:40]}", f"buy:{key}")] for _, title, key in subs]
    rows += [[(f"🔑 Get my invite to {title[:32]}", f"invite:{key}")] for _, title, key in subs]
    await show(update, "\n".join(lines), keyboard(*rows))
