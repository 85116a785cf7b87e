"""Bot API methods for payments in Telegram Stars (currency "XTR").

sendInvoice, createInvoiceLink, answerPreCheckoutQuery, refundStarPayment,
editUserStarSubscription, getStarTransactions, getMyStarBalance. Only Stars are emulated: an
invoice in another currency needs a payment provider the sandbox does not have. Error wordings
marked "unconfirmed" are plausible guesses where Telegram does not document them.
"""

from __future__ import annotations

from telepay_sandbox import telegram_payments as payments
from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_methods_messages import check_can_send, check_reply_markup, resolve_chat
from telepay_sandbox.telegram_params import (
    BOOLEAN, CHAT_ID, INTEGER, STRING, Args, Param, api_method, bad_request,
)
from telepay_sandbox.telegram_stars import SUBSCRIPTION_PERIOD, StarCharge, StarInvoice
from telepay_sandbox.telegram_state import World

MAX_STARS = 10000  # the most one Stars invoice (and a subscription's price) may ask
_COMMON = dict(
    title=Param(STRING, True), description=Param(STRING, True), payload=Param(STRING, True),
    provider_token=Param(STRING), currency=Param(STRING, True),
    prices=Param(("Array of LabeledPrice",), True), max_tip_amount=Param(INTEGER),
    suggested_tip_amounts=Param(("Array of Integer",)), provider_data=Param(STRING),
    photo_url=Param(STRING), photo_size=Param(INTEGER), photo_width=Param(INTEGER),
    photo_height=Param(INTEGER), need_name=Param(BOOLEAN), need_phone_number=Param(BOOLEAN),
    need_email=Param(BOOLEAN), need_shipping_address=Param(BOOLEAN),
    send_phone_number_to_provider=Param(BOOLEAN), send_email_to_provider=Param(BOOLEAN),
    is_flexible=Param(BOOLEAN),
)


def _stars_invoice(args: Args, subscription_period: int | None = None) -> StarInvoice:
    """The invoice the arguments describe, if Telegram would accept it in Stars."""
    if args["currency"] != "XTR" or args.get("provider_token"):
        raise bad_request("PAYMENT_PROVIDER_INVALID")  # no card provider in the sandbox
    if not 1 <= len(args["title"]) <= 32:
        raise bad_request("INVOICE_TITLE_INVALID")  # unconfirmed wording
    if not 1 <= len(args["description"]) <= 255:
        raise bad_request("INVOICE_DESCRIPTION_INVALID")  # unconfirmed wording
    if not 1 <= len(args["payload"].encode()) <= 128:
        raise bad_request("INVOICE_PAYLOAD_INVALID")  # unconfirmed wording
    prices = args["prices"]
    if len(prices) != 1 or not isinstance(prices[0], dict):
        raise bad_request("STARS_INVOICE_INVALID")  # Stars take exactly one price; unconfirmed wording
    amount = prices[0].get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= MAX_STARS:
        raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
    if args.get("max_tip_amount") or args.get("suggested_tip_amounts"):
        raise bad_request("STARS_INVOICE_INVALID")  # no tips in Stars; unconfirmed wording
    return StarInvoice(args["title"], args["description"], args["payload"], amount,
                       subscription_period=subscription_period)


@api_method(
    "sendInvoice", chat_id=Param(CHAT_ID, True), message_thread_id=Param(INTEGER),
    direct_messages_topic_id=Param(INTEGER), start_parameter=Param(STRING),
    disable_notification=Param(BOOLEAN), protect_content=Param(BOOLEAN),
    allow_paid_broadcast=Param(BOOLEAN), message_effect_id=Param(STRING),
    suggested_post_parameters=Param(("SuggestedPostParameters",)),
    reply_parameters=Param(("ReplyParameters",)), reply_markup=Param(("InlineKeyboardMarkup",)),
    **_COMMON,
)
def send_invoice(world: World, args: Args) -> dict:
    where = resolve_chat(world, args["chat_id"])
    check_can_send(world, where)
    invoice = _stars_invoice(args)
    invoice.start_parameter = args.get("start_parameter", "")
    markup = check_reply_markup(args.get("reply_markup"), where)
    if markup is None:
        markup = {"inline_keyboard": [[{"text": f"Pay ⭐️{invoice.amount}", "pay": True}]]}
    elif not markup["inline_keyboard"] or not markup["inline_keyboard"][0] or \
            not markup["inline_keyboard"][0][0].get("pay"):
        raise bad_request("the first button must be a Pay button")  # unconfirmed wording
    message = world.add_message(where, "", world.bot.id, reply_markup=markup, service={"invoice": {
        "title": invoice.title, "description": invoice.description,
        "start_parameter": invoice.start_parameter, "currency": "XTR", "total_amount": invoice.amount,
    }})
    invoice.chat_id, invoice.message_id = where.id, message.message_id
    world.stars.invoices_by_message[(where.id, message.message_id)] = invoice
    world.notify()
    return render.message(world, message)


@api_method(
    "createInvoiceLink", business_connection_id=Param(STRING), subscription_period=Param(INTEGER),
    **_COMMON,
)
def create_invoice_link(world: World, args: Args) -> str:
    if args.get("business_connection_id"):
        raise bad_request("BUSINESS_CONNECTION_INVALID")  # business accounts are not emulated
    period = args.get("subscription_period")
    if period is not None and period != SUBSCRIPTION_PERIOD:
        raise bad_request("SUBSCRIPTION_PERIOD_INVALID")  # unconfirmed wording
    invoice = _stars_invoice(args, period)
    invoice.slug = world.stars.new_slug()
    world.stars.invoices_by_slug[invoice.slug] = invoice
    return f"https://t.me/${invoice.slug}"


@api_method(
    "answerPreCheckoutQuery", pre_checkout_query_id=Param(STRING, True), ok=Param(BOOLEAN, True),
    error_message=Param(STRING),
)
def answer_pre_checkout_query(world: World, args: Args) -> bool:
    query = world.stars.pre_checkouts.get(args["pre_checkout_query_id"])
    if query is None or query.answer is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    if not args["ok"] and not args.get("error_message"):
        raise bad_request("error_message is empty")  # unconfirmed wording
    query.answer = {"ok": args["ok"], "error_message": args.get("error_message")}
    world.notify()
    return True


def _charge(world: World, user_id: int, charge_id: str) -> StarCharge:
    charge = world.stars.charges.get(charge_id)
    if charge is None or charge.user_id != user_id:
        raise bad_request("CHARGE_ID_INVALID")  # unconfirmed wording
    return charge


@api_method(
    "refundStarPayment", user_id=Param(INTEGER, True), telegram_payment_charge_id=Param(STRING, True),
)
def refund_star_payment(world: World, args: Args) -> bool:
    charge = _charge(world, args["user_id"], args["telegram_payment_charge_id"])
    if charge.refunded:
        raise bad_request("CHARGE_ALREADY_REFUNDED")
    if world.stars.bot_balance < charge.amount:
        raise bad_request("BALANCE_TOO_LOW")  # unconfirmed wording
    payments.refund(world, charge)
    return True


@api_method(
    "editUserStarSubscription", user_id=Param(INTEGER, True),
    telegram_payment_charge_id=Param(STRING, True), is_canceled=Param(BOOLEAN, True),
)
def edit_user_star_subscription(world: World, args: Args) -> bool:
    subscription = world.stars.subscription_of(args["user_id"], args["telegram_payment_charge_id"])
    if subscription is None:
        raise bad_request("SUBSCRIPTION_ID_INVALID")  # not a subscription payment; unconfirmed wording
    if subscription.lapsed and not args["is_canceled"]:
        raise bad_request("SUBSCRIPTION_EXPIRED")  # unconfirmed wording
    subscription.canceled_by_bot = args["is_canceled"]
    world.notify()
    return True


@api_method("getStarTransactions", offset=Param(INTEGER), limit=Param(INTEGER))
def get_star_transactions(world: World, args: Args) -> dict:
    offset = max(0, args.get("offset", 0))
    limit = min(100, max(1, args.get("limit", 100)))
    chosen = world.stars.transactions[offset:offset + limit]
    return {"transactions": [payments.transaction(world, record) for record in chosen]}


@api_method("getMyStarBalance")
def get_my_star_balance(world: World, args: Args) -> dict:
    return {"amount": world.stars.bot_balance}


METHODS = (
    send_invoice, create_invoice_link, answer_pre_checkout_query, refund_star_payment,
    edit_user_star_subscription, get_star_transactions, get_my_star_balance,
)
