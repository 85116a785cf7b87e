"""A crypto payment refunded after it completed its invoice: what it granted is taken back.

Two ways in, one path: NOWPayments reports `refunded` for a fulfilled payment (the processor),
or an operator marks one refunded (`telepay payments resolve ID --action refunded`). Either way,
in the caller's transaction, with the payment and invoice rows locked:

* the owner's share is withdrawn while it is unfunded (`payouts.refunds.withdraw_share`: its
  payout cancelled, or the share taken out of the payout or batch carrying it); once the host
  has signed the transfer it cannot be recalled, and the payment goes to review;
* the days the purchase added come off the subscription (`subscriptions.take_back_days`, shared
  with Stars refunds); if that ends it, the buyer is removed by the expiry job;
* the buyer and the owner are told, and the operators get an alert naming the payment, the
  invoice, the buyer, the channel, the payout (id and status) and the command that acts on it.

The invoice moving to `refunded` is the mark that all this was done: a second call (a repeated
IPN, a second `resolve`) changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from telepay.models import (
    Channel, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus, PayoutStatus, Subscription,
    SubscriptionStatus,
)
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators, queue_message
from telepay.services.notifications import request_owner_notification
from telepay.services.payments import texts
from telepay.services.payouts.refunds import Outcome, Withdrawal, withdraw_share
from telepay.services.subscriptions import take_back_days

logger = logging.getLogger(__name__)

REVIEW_REASON = "refund_after_fulfilment"
# A payout in these states has its transfer on the chain, or on its way there.
_GONE = (PayoutStatus.FUNDING, PayoutStatus.FUNDED, PayoutStatus.FINISHED)


@dataclass(frozen=True)
class Refunded:
    """What `refund_fulfilled` did; `applied` False: it had been done before, nothing changed."""

    applied: bool
    withdrawal: Withdrawal | None = None
    subscription: Subscription | None = None
    review: str | None = None


def is_refunded(invoice: Invoice) -> bool:
    return invoice.status == InvoiceStatus.REFUNDED


def refund_fulfilled(session: Session, jobs: JobQueue, payment: Payment, invoice: Invoice, now: datetime, *,
                     source: str) -> Refunded:
    """Take back what the fulfilled `payment` granted (`source`: who says it was refunded)."""
    if payment.fulfilled_at is None:
        raise ValueError(f"payment {payment.id} was never fulfilled")
    if is_refunded(invoice):
        return Refunded(False, review=payment.needs_review)
    ref = payment.provider_payment_id
    invoice.status = InvoiceStatus.REFUNDED
    payment.status, payment.updated_at = PaymentStatus.REFUNDED, now
    withdrawal = withdraw_share(session, jobs, _share_carrier(session, payment, invoice), now,
                                f"payment {payment.id} ({ref}) refunded after fulfilment: {source}")
    subscription = take_back_days(session, jobs, invoice, now)
    channel = session.get_one(Channel, invoice.channel_id)
    days = invoice.days if invoice.kind == InvoiceKind.SUBSCRIPTION else None
    title = channel.closed_title if days is not None else channel.open_title
    review = None
    if withdrawal.outcome == Outcome.SENT:
        review = (f"{REVIEW_REASON}: the owner's share of {texts.usd(withdrawal.share_usd or Decimal(0))} is in payout "
                  f"{withdrawal.payout_id}, {_status(withdrawal)}, sent; recover it from the owner or write it off")
        payment.needs_review = review
    buyer = texts.buyer_name(invoice.buyer_username, invoice.buyer_user_id)
    alert_operators(session, jobs, texts.refund_alert(
        payment_id=payment.id, ref=ref, invoice_id=invoice.id,
        paid=texts.crypto(payment.actually_paid, payment.pay_currency),
        buyer=f"{buyer} (user {invoice.buyer_user_id})" if invoice.buyer_username else buyer,
        channel=f"channel {channel.id} “{title}”", source=source,
        access=_access(invoice, subscription), share=_share(withdrawal, payment.id)),
        key=f"{REVIEW_REASON}:{ref}")
    ended = subscription is not None and subscription.status == SubscriptionStatus.EXPIRED
    queue_message(session, jobs, invoice.buyer_user_id, texts.refunded_access_ended(
        title, days, subscription.expires_at if subscription else None, ended),
        dedupe_key=f"buyer:{ref}:{REVIEW_REASON}")
    request_owner_notification(session, jobs, channel.id, texts.refunded_owner(
        title, days, buyer, withdrawal.share_usd, withdrawal.outcome.value, withdrawal.payout_id),
        idempotency_key=f"refund:{payment.id}")
    logger.warning("payment %s (%s), invoice %s: refunded after fulfilment (%s); share %s, payout %s", payment.id,
                   ref, invoice.id, source, withdrawal.outcome.value, withdrawal.payout_id)
    return Refunded(True, withdrawal, subscription, review)


def _share_carrier(session: Session, payment: Payment, invoice: Invoice) -> Payment:
    """The payment holding the invoice's share: this one, or, when a top-up completed the invoice,
    the deposit that did (it carries the share of them all; `topup`)."""
    if payment.owner_share_usd is not None:
        return payment
    carrier = session.scalars(select(Payment).where(
        Payment.invoice_id == invoice.id, Payment.fulfilled_at.is_not(None), Payment.owner_share_usd.is_not(None))
        .order_by(Payment.id).with_for_update()).first()
    return carrier or payment


def _status(withdrawal: Withdrawal) -> str:
    return withdrawal.status_now.value if withdrawal.status_now else "none"


def _access(invoice: Invoice, subscription: Subscription | None) -> str:
    if invoice.kind != InvoiceKind.SUBSCRIPTION:
        return "a donation; nothing to take back."
    if subscription is None:
        return "no subscription found; nothing to take back."
    if subscription.status == SubscriptionStatus.EXPIRED:
        return (f"{invoice.days} days taken back; subscription {subscription.id} has ended, and the user is "
                "being removed from the channel.")
    return (f"{invoice.days} days taken back; subscription {subscription.id} now ends "
            f"{texts.when(subscription.expires_at)}.")


def _share(w: Withdrawal, payment_id: int) -> str:
    share = texts.usd(w.share_usd) if w.share_usd is not None else None
    show = f"`telepay payouts show {w.payout_id}`"
    before = w.status_before.value if w.status_before else None
    if w.outcome == Outcome.NO_SHARE:
        return "none was allocated."
    if w.outcome == Outcome.SENT:
        sent = ("SENT, it cannot be recalled" if w.status_before in _GONE else
                "its transfer is signed, so TelePay cannot stop it (see whether it went out)")
        return (f"{share} in payout {w.payout_id}, {before}: {sent}. The payment is in "
                f"review: recover it from the owner or write it off, then `telepay payments resolve {payment_id} "
                f"--action dismiss --reason ...`. {show}")
    if w.outcome == Outcome.CANCELLED:
        return f"{share} in payout {w.payout_id}, {before}: cancelled by TelePay, nothing was sent. {show}"
    if w.outcome == Outcome.HELD_CANCELLED:
        return (f"{share} was held for the owner's next batch: cancelled by TelePay (payout {w.payout_id} "
                f"records it), nothing was sent. {show}")
    if w.outcome == Outcome.TAKEN_OUT:
        rest = (f"the other shares go on in payout {w.rest_id} (`telepay payouts show {w.rest_id}`; to stop them "
                f"too: `telepay payouts cancel {w.rest_id} --reason ...`)" if w.rest_id
                else "its other shares are held for the owner's next batch")
        return (f"{share} in payout {w.payout_id}, {before}, shared with other sales: cancelled by TelePay with "
                f"this share in it, nothing was sent; {rest}. {show}")
    return f"payout {w.payout_id} was cancelled before. {show}"
