"""What paying in Telegram Stars does in the sandbox: the client's checkout, renewals, refunds.

A person pays an invoice (a message from sendInvoice or a link from createInvoiceLink): with
too few Stars nothing reaches the bot; otherwise the bot gets a `pre_checkout_query` and has 10
seconds to answer it; a yes moves the Stars and the bot gets a `message` with
`successful_payment`. A Star subscription is charged again when each 30-day period ends on the
sandbox clock (`charge_due`), unless the bot cancelled it or the person's balance is short
(then it lapses quietly, as on Telegram: the bot hears nothing). A refund moves the Stars back
and the bot gets a `message` with `refunded_payment`. Callers hold the world lock, except
`pay`, which takes it and waits on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_stars import (
    PreCheckout, StarCharge, StarInvoice, StarSubscription, StarTransactionRecord,
)
from telepay_sandbox.telegram_state import World

PRE_CHECKOUT_TIMEOUT = 10.0  # seconds Telegram waits for answerPreCheckoutQuery


@dataclass(frozen=True)
class PaymentOutcome:
    """What the person's client showed: "paid", "insufficient_balance", "refused",
    "timeout" or "already_subscribed"; `error_message` is the bot's reason when refused."""

    status: str
    charge_id: str | None = None
    error_message: str | None = None

    @property
    def paid(self) -> bool:
        return self.status == "paid"


def find_invoice(world: World, target) -> StarInvoice:
    """The invoice behind a message handle (sendInvoice) or a link (createInvoiceLink)."""
    stars = world.stars
    if isinstance(target, str):
        slug = target.rsplit("$", 1)[-1]
        invoice = stars.invoices_by_slug.get(slug) if "$" in target else None
    else:
        invoice = stars.invoices_by_message.get((target.chat_id, target.message_id))
    if invoice is None:
        raise LookupError(f"{target!r} is not an invoice of this bot")
    return invoice


def pay(world: World, user_id: int, target, timeout: float = PRE_CHECKOUT_TIMEOUT) -> PaymentOutcome:
    """The person taps Pay: pre-checkout, the bot's answer, then the charge and its message."""
    with world.changed:
        invoice = find_invoice(world, target)
        stars = world.stars
        if invoice.subscription_period and stars.active_subscription(user_id, invoice, world.now()):
            return PaymentOutcome("already_subscribed")
        if stars.balances.get(user_id, 0) < invoice.amount:
            return PaymentOutcome("insufficient_balance")  # the client offers to buy Stars
        query_id = stars.new_query_id()
        query = stars.pre_checkouts[query_id] = PreCheckout(query_id, user_id)
        world.updates.push("pre_checkout_query", {
            "id": query_id, "from": render.user(world.users[user_id]), "currency": "XTR",
            "total_amount": invoice.amount, "invoice_payload": invoice.payload,
        })
        world.notify()
        deadline = time.monotonic() + timeout
        while query.answer is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                query.answer = {"ok": False, "late": True}  # a late answer is refused
                return PaymentOutcome("timeout")
            world.changed.wait(remaining)
        if not query.answer["ok"]:
            return PaymentOutcome("refused", error_message=query.answer.get("error_message"))
        # The balance may have changed while the bot thought about it.
        if stars.balances.get(user_id, 0) < invoice.amount:
            return PaymentOutcome("insufficient_balance")
        subscription = None
        if invoice.subscription_period:
            subscription = StarSubscription(stars.new_subscription_id(), user_id, invoice,
                                            expires_at=world.now() + invoice.subscription_period)
            stars.subscriptions[subscription.id] = subscription
        charge = _charge(world, user_id, invoice, subscription, recurring=False)
        return PaymentOutcome("paid", charge_id=charge.charge_id)


def _charge(world: World, user_id: int, invoice: StarInvoice, subscription: StarSubscription | None, *,
            recurring: bool) -> StarCharge:
    stars = world.stars
    now = world.now()
    stars.balances[user_id] = stars.balances.get(user_id, 0) - invoice.amount
    stars.bot_balance += invoice.amount
    charge = StarCharge(stars.new_charge_id(), user_id, invoice.amount, invoice.payload, now,
                        subscription_id=subscription.id if subscription else None, is_recurring=recurring)
    stars.charges[charge.charge_id] = charge
    stars.transactions.append(StarTransactionRecord(
        charge.charge_id, invoice.amount, now, user_id, incoming=True, payload=invoice.payload,
        subscription_period=invoice.subscription_period))
    paid = {"currency": "XTR", "total_amount": invoice.amount, "invoice_payload": invoice.payload}
    if subscription is not None:
        subscription.charge_ids.append(charge.charge_id)
        paid["subscription_expiration_date"] = subscription.expires_at
        paid["is_recurring"] = True
        if not recurring:
            paid["is_first_recurring"] = True
    paid.update(telegram_payment_charge_id=charge.charge_id, provider_payment_charge_id="")
    _service_message(world, user_id, {"successful_payment": paid})
    return charge


def _service_message(world: World, user_id: int, fields: dict) -> None:
    where = world.private_chat(world.users[user_id])
    message = world.add_message(where, "", user_id, service=fields)
    world.updates.push("message", render.message(world, message))
    world.notify()


def force_charge(world: World, user_id: int, payload: str, amount: int) -> str:
    """A charge the bot never agreed to (no pre-checkout): for tests of what the bot does with a
    `successful_payment` it cannot match, as after an invoice made by another deployment."""
    invoice = StarInvoice("Unknown", "Unknown", payload, amount)
    world.stars.balances[user_id] = world.stars.balances.get(user_id, 0) + amount  # it is not the test's point
    return _charge(world, user_id, invoice, None, recurring=False).charge_id


def charge_due(world: World) -> int:
    """Renew every Star subscription whose period has ended; the number of charges made."""
    charged = 0
    now = world.now()
    for subscription in world.stars.subscriptions.values():
        while not subscription.lapsed and subscription.expires_at <= now:
            user_id, invoice = subscription.user_id, subscription.invoice
            if subscription.canceled_by_bot or world.stars.balances.get(user_id, 0) < invoice.amount:
                subscription.lapsed = True
                break
            subscription.expires_at += invoice.subscription_period
            _charge(world, user_id, invoice, subscription, recurring=True)
            charged += 1
    return charged


def refund(world: World, charge: StarCharge) -> None:
    """Return a charge's Stars to the person; the bot gets `refunded_payment`."""
    stars = world.stars
    charge.refunded = True
    stars.balances[charge.user_id] = stars.balances.get(charge.user_id, 0) + charge.amount
    stars.bot_balance -= charge.amount
    # A refund transaction has the id of the payment it returns.
    stars.transactions.append(StarTransactionRecord(
        charge.charge_id, charge.amount, world.now(), charge.user_id, incoming=False, payload=charge.payload))
    _service_message(world, charge.user_id, {"refunded_payment": {
        "currency": "XTR", "total_amount": charge.amount, "invoice_payload": charge.payload,
        "telegram_payment_charge_id": charge.charge_id, "provider_payment_charge_id": "",
    }})


def transaction(world: World, record: StarTransactionRecord) -> dict:
    partner = {"type": "user", "transaction_type": "invoice_payment",
               "user": render.user(world.users[record.user_id])}
    if record.incoming:
        partner["invoice_payload"] = record.payload
        if record.subscription_period:
            partner["subscription_period"] = record.subscription_period
    body = {"id": record.id, "amount": record.amount, "date": record.date}
    body["source" if record.incoming else "receiver"] = partner
    return body
