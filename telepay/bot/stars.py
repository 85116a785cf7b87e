"""Paying in Telegram Stars: XTR invoices, the pre-checkout answer, successful and refunded
payments, and Cancel / Resume of a Star subscription from /mysubs.

Buttons carry the channel key and tier number (`star:<key>:<n>` for one period,
`stsub:<key>:<n>` for a 30-day Star subscription), never a price. Telegram waits 10 s for the
pre-checkout answer, so the check gets 8 s and a refusal says why.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, MessageHandler, PreCheckoutQueryHandler, filters

from telepay.bot.buy import my_subscriptions
from telepay.bot.common import Context, ack, db, limits, tell_error
from telepay.bot.limits import INVOICE, allowed
from telepay.errors import TelePayError
from telepay.services.stars import texts
from telepay.services.stars.checkout import SUBSCRIPTION_PERIOD, StarsInvoice
from telepay.services.stars.holds import apply_refund
from telepay.services.stars.subscriptions import set_renewal

logger = logging.getLogger(__name__)

PRE_CHECKOUT_BUDGET = 8.0  # seconds of Telegram's 10 for our check


def stars(context: Context):
    return context.services.stars


async def send_stars_invoice(update: Update, context: Context, invoice: StarsInvoice) -> None:
    """One period: an invoice message. A subscription: a link (only links can renew)."""
    prices = [LabeledPrice(invoice.label, invoice.stars)]
    if not invoice.subscription:
        await context.bot.send_invoice(update.effective_chat.id, invoice.title, invoice.description,
                                       invoice.payload, "XTR", prices)
        return
    link = await context.bot.create_invoice_link(invoice.title, invoice.description, invoice.payload, "XTR",
                                                 prices, subscription_period=SUBSCRIPTION_PERIOD)
    await update.effective_chat.send_message(
        f"🔁 {invoice.description}.\nYou pay {texts.stars(invoice.stars)} now and every 30 days until you "
        "cancel (in /mysubs).",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(
            f"⭐ Subscribe for {invoice.stars:,} Stars", url=link)]]))


async def pay_tier(update: Update, context: Context) -> None:
    """`star:<key>:<n>` / `stsub:<key>:<n>`: an XTR invoice for that tier, once or renewing."""
    kind, key, number = update.callback_query.data.split(":")
    if not await allowed(update, limits(context), INVOICE):
        return
    user = update.effective_user
    try:
        invoice = await asyncio.to_thread(stars(context).checkout.open_tier, user.id, user.username, key,
                                          int(number), subscription=kind == "stsub")
    except TelePayError as error:
        await tell_error(update, error)
        return
    await ack(update)
    await send_stars_invoice(update, context, invoice)


async def donate(update: Update, context: Context, key: str, amount: int) -> None:
    """A keypad donation confirmed in Stars: its invoice."""
    user = update.effective_user
    try:
        invoice = await asyncio.to_thread(stars(context).checkout.open_donation, user.id, user.username, key, amount)
    except TelePayError as error:
        await tell_error(update, error)
        return
    await send_stars_invoice(update, context, invoice)


async def pre_checkout(update: Update, context: Context) -> None:
    """Answers Telegram's pre-checkout query: yes, or no with the reason (within 10 s)."""
    query = update.pre_checkout_query
    check = asyncio.to_thread(stars(context).checkout.refusal, query.invoice_payload, query.from_user.id,
                              query.currency, query.total_amount)
    try:
        refusal = await asyncio.wait_for(check, PRE_CHECKOUT_BUDGET)
    except TimeoutError:
        refusal = texts.TRY_AGAIN
    except Exception:  # noqa: BLE001 - a broken check must still answer, or the buyer waits 10 s for nothing
        logger.exception("pre-checkout %s: the check failed", query.id)
        refusal = texts.TRY_AGAIN
    if refusal:
        logger.info("pre-checkout %s (payload %s) refused: %s", query.id, query.invoice_payload, refusal)
        await query.answer(ok=False, error_message=refusal)
    else:
        await query.answer(ok=True)


async def successful_payment(update: Update, context: Context) -> None:
    """A `successful_payment`: recorded once per charge id, then fulfilled like any payment."""
    paid = update.effective_message.successful_payment
    user = update.effective_user
    receipt = await asyncio.to_thread(stars(context).receipts.record, user.id, user.username, paid.to_dict())
    if receipt.created:
        context.services.wake_worker()


async def refunded_payment(update: Update, context: Context) -> None:
    """A `refunded_payment`: whoever refunded it (our command, Telegram), access ends once."""
    refunded = update.effective_message.refunded_payment
    svc = context.services

    def record(session):
        return apply_refund(session, svc.jobs, refunded.telegram_payment_charge_id, svc.clock.now())

    if (await db(context, record)).applied:
        svc.wake_worker()


async def renewal(update: Update, context: Context) -> None:
    """`stc:<subscription id>` / `str:<id>`: cancel or resume a Star subscription's renewal."""
    action, subscription_id = update.callback_query.data.split(":")
    cancel = action == "stc"
    user_id = update.effective_user.id
    try:
        charge_id = await db(context, set_renewal, int(subscription_id), user_id, None)
        await context.bot.edit_user_star_subscription(user_id, charge_id, is_canceled=cancel)
        await db(context, set_renewal, int(subscription_id), user_id, not cancel)
    except TelePayError as error:
        await tell_error(update, error)
        return
    except TelegramError as error:
        logger.warning("subscription %s: editUserStarSubscription refused: %s", subscription_id, error)
        await ack(update, "Telegram didn't accept that just now. Please try again.")
        return
    await ack(update, "Auto-renewal cancelled." if cancel else "Auto-renewal is on again.")
    await my_subscriptions(update, context)


def handlers() -> list:
    return [
        CallbackQueryHandler(pay_tier, pattern=r"^(star|stsub):[A-Za-z0-9]{6,16}:\d{1,2}$"),
        CallbackQueryHandler(renewal, pattern=r"^st[cr]:\d+$"),
        PreCheckoutQueryHandler(pre_checkout),
        MessageHandler(filters.SUCCESSFUL_PAYMENT, successful_payment),
        MessageHandler(filters.StatusUpdate.REFUNDED_PAYMENT, refunded_payment),
    ]
