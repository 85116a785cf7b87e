"""Buyers: the tier card a deep link opens, "Pay", the invoice message, retries, /mysubs and renewals.

Buttons carry the channel key and the tier number (`pay:<key>:<n>` for crypto, `star:` and
`stsub:` for Stars, see `telepay.bot.stars`), never a price, so they work after a restart and
cannot be edited into a cheaper one. A channel offers the methods its owner enabled; in
STARS_ONLY mode, Stars alone.
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update, WebAppInfo

from telepay.bot.common import Context, ack, db, keyboard, limits, now, provider, show, tell_error
from telepay.bot.limits import INVOICE, allowed
from telepay.errors import TelePayError
from telepay.models import PaymentMethod
from telepay.services.invoices import (
    DONATE, UNKNOWN_LINK, InvoiceView, Offer, InvoiceUnavailable, channel_offers, offer, parse_payload,
)
from telepay.services.stars.checkout import TierOptions
from telepay.services.stars.receipts import RENEWAL_GRACE
from telepay.services.subscriptions import active_subscriptions

logger = logging.getLogger(__name__)


def pay_buttons(found: Offer, options: TierOptions, *, plans: bool = False) -> list[list[tuple[str, str]]]:
    """Stars first (Telegram's rule for digital services), then crypto, as the channel allows.
    `plans`: the labels of the Renew list, which shows every tier at once."""
    rows = []
    tier, days = f"{found.key}:{found.number}", f" · {found.days} days" if plans else ""
    if PaymentMethod.STARS in options.methods:
        rows.append([(f"⭐ {options.stars:,} Stars{days}" if plans else f"⭐ Pay {options.stars:,} Stars",
                      f"star:{tier}")])
        if options.renewable:
            rows.append([(f"🔁 {options.stars:,} Stars every 30 days (auto-renew)", f"stsub:{tier}")])
    if PaymentMethod.CRYPTO in options.methods:
        rows.append([(f"${found.price_usd:,.2f}{days}" if plans else f"💳 Pay ${found.price_usd:,.2f}",
                      f"pay:{tier}")])
    return rows


def tier_card(found: Offer, options: TierOptions) -> tuple[str, InlineKeyboardMarkup]:
    ways = []
    if PaymentMethod.STARS in options.methods:
        ways.append(f"in Telegram Stars ({options.stars:,} ⭐)")
    if PaymentMethod.CRYPTO in options.methods:
        ways.append(f"in crypto through NOWPayments (${found.price_usd:,.2f})")
    text = (f"🔒 Subscription to “{found.closed_title}”\n\n"
            f"Price: ${found.price_usd:,.2f}\nDuration: {found.days} days\n\n"
            f"You can pay {' or '.join(ways) or 'in no way right now'}. Your personal invite link arrives "
            "here as soon as the payment is confirmed.")
    return text, keyboard(*pay_buttons(found, options))


async def open_link(update: Update, context: Context, payload: str) -> None:
    """A channel's subscribe link: shows the tier's card from the database (never from the link)."""
    try:
        key, target = parse_payload(payload)
        if target == DONATE:
            raise TelePayError(UNKNOWN_LINK)  # donate links are the donation conversation's
        found = await db(context, offer, key, target)
        options = await db(context, context.services.stars.checkout.options, found)
    except TelePayError as error:
        await update.effective_message.reply_text(error.message)
        return
    text, markup = tier_card(found, options)
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
    invoices = context.services.invoices
    await deliver_invoice(update, context,
                          lambda: invoices.open_subscription(user.id, user.username, key, int(number)))


async def retry(update: Update, context: Context) -> None:
    """`inv:<invoice id>`: asks the provider again for an invoice it refused."""
    invoice_id = update.callback_query.data.split(":", 1)[1]
    if not await allowed(update, limits(context), INVOICE):
        return
    await ack(update, "Trying again…")
    invoices = context.services.invoices
    await deliver_invoice(update, context, lambda: invoices.retry(invoice_id, update.effective_user.id))


async def renew(update: Update, context: Context) -> None:
    """`buy:<key>`: the channel's current tiers, each with a Pay button."""
    key = update.callback_query.data.split(":", 1)[1]
    checkout = context.services.stars.checkout
    offers = await db(context, channel_offers, key)
    options = [await db(context, checkout.options, o) for o in offers]
    await ack(update)
    if not offers:
        await show(update, "This channel has no subscription options right now.")
        return
    lines = [f"Renew “{offers[0].closed_title}” — pick a plan:"]
    rows = [row for o, opt in zip(offers, options) for row in pay_buttons(o, opt, plans=True)]
    await update.effective_chat.send_message("\n".join(lines), reply_markup=keyboard(*rows))


def _subscription_line(expires, title, star_charge_id, star_renews) -> str:
    if star_charge_id and star_renews:
        # Telegram charges at the period's end; our end carries a grace for a late charge.
        return f"• {title} — renews on {expires - RENEWAL_GRACE:%d %b %Y, %H:%M} UTC (⭐ auto-renewal)"
    if star_charge_id:
        return f"• {title} — until {expires - RENEWAL_GRACE:%d %b %Y, %H:%M} UTC (auto-renewal off)"
    return f"• {title} — until {expires:%d %b %Y, %H:%M} UTC"


async def my_subscriptions(update: Update, context: Context) -> None:
    """/mysubs (or the menu button): active subscriptions with expiry dates and Renew buttons."""
    await ack(update)
    subs = await db(context, active_subscriptions, update.effective_user.id, now(context))
    if not subs:
        await show(update, "You have no active subscriptions yet. Tap a subscribe button in a channel "
                           "to get one.")
        return
    lines = ["🎟 Your subscriptions:\n"]
    lines += [_subscription_line(expires, title, charge, renews) for expires, title, _, _, charge, renews in subs]
    rows = [[(f"⏸ Cancel auto-renewal of {title[:28]}", f"stc:{sub_id}")] if renews else
            [(f"▶️ Resume auto-renewal of {title[:28]}", f"str:{sub_id}")] if charge else
            [(f"🔄 Renew {title[:40]}", f"buy:{key}")] for _, title, key, sub_id, charge, renews in subs]
    rows += [[(f"🔑 Get my invite to {title[:32]}", f"invite:{key}")] for _, title, key, *_ in subs]
    await show(update, "\n".join(lines), keyboard(*rows))
