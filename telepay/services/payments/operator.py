"""The operator's view of payments in (`telepay payments list|show|resolve`).

Queries read one snapshot; `resolve` settles a payment in review (`needs_review`): fulfil it the
way a finished payment is fulfilled (`processor.complete_invoice`), mark it refunded, or dismiss
the review keeping its state. Marking refunded a payment that was not fulfilled grants nothing;
one that was fulfilled (in review or not) has what it granted taken back, exactly as when
NOWPayments reports the refund (`refunds.refund_fulfilled`: access, the owner's unfunded share,
buyer and owner told). Each resolution writes an `AuditLog` row with the operator's reason; a
refund already applied is not applied again (`Resolution.changed` is False, no row written).
The caller owns the transaction.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from telepay.errors import Conflict, NotFound
from telepay.models import (
    Accumulation, AuditLog, Channel, ChannelStatus, Invite, InviteStatus, Invoice, InvoiceStatus, Payment,
    PaymentEvent, PaymentStatus, Payout, StarPayment, Subscription,
)
from telepay.services.fulfilment import Fulfilment
from telepay.services.payments.processor import OPEN_INVOICE, complete_invoice
from telepay.services.payments.refunds import Refunded, is_refunded, refund_fulfilled
from telepay.services.rights import let_in

logger = logging.getLogger(__name__)

# Audit rows need an actor; a command-line resolution has no Telegram user behind it.
CLI_ACTOR = 0


class Action(enum.StrEnum):
    FULFIL = "fulfil"
    REFUNDED = "refunded"
    DISMISS = "dismiss"
    DELIVER = "deliver"


@dataclass(frozen=True)
class PaymentDetail:
    """A payment with everything it touched."""

    payment: Payment
    invoice: Invoice
    events: list[PaymentEvent]
    subscription: Subscription | None
    invites: list[Invite]
    payout: Payout | None


def list_payments(session: Session, *, review_only: bool = False, limit: int = 50) -> list[tuple[Payment, Invoice]]:
    """Recent payments, newest first, each with its invoice."""
    query = select(Payment, Invoice).join(Invoice, Invoice.id == Payment.invoice_id)
    if review_only:
        query = query.where(Payment.needs_review.is_not(None))
    return [(p, i) for p, i in session.execute(query.order_by(Payment.created_at.desc(), Payment.id.desc())
                                               .limit(limit))]


def find_payment(session: Session, ref: str, *, for_update: bool = False) -> Payment:
    """A payment by our id or the provider's payment id; `NotFound` otherwise."""
    match = Payment.provider_payment_id == ref
    if ref.isdigit():
        match = or_(match, Payment.id == int(ref))
    query = select(Payment).where(match).order_by(Payment.id)
    if for_update:
        query = query.with_for_update()
    payment = session.scalars(query).first()
    if payment is None:
        raise NotFound(f"no payment {ref!r} (neither our id nor NOWPayments' payment id)")
    return payment


def show_payment(session: Session, ref: str) -> PaymentDetail:
    payment = find_payment(session, ref)
    invoice = session.get_one(Invoice, payment.invoice_id)
    events = list(session.scalars(select(PaymentEvent).where(
        PaymentEvent.provider_payment_id == payment.provider_payment_id).order_by(PaymentEvent.id)))
    subscription, invites = None, []
    if payment.fulfilled_at is not None:
        subscription = session.scalars(select(Subscription).where(
            Subscription.channel_id == invoice.channel_id, Subscription.user_id == invoice.buyer_user_id)).first()
        invites = list(session.scalars(select(Invite).where(Invite.invoice_id == invoice.id).order_by(Invite.id)))
    payout_id = payment.payout_id or session.scalar(  # a batched share feeds its accumulation's payout
        select(Accumulation.payout_id).where(Accumulation.payment_id == payment.id))
    payout = session.get(Payout, payout_id) if payout_id else None
    return PaymentDetail(payment, invoice, events, subscription, invites, payout)


@dataclass(frozen=True)
class Resolution:
    payment: Payment
    changed: bool                  # False: a refund applied before; nothing was written
    refund: Refunded | None = None  # what marking a fulfilled payment refunded took back


def resolve_payment(session: Session, fulfilment: Fulfilment, ref: str, action: Action, reason: str,
                    now: datetime) -> Resolution:
    """Settle a payment in review, or mark a fulfilled one refunded; `NotFound` for an unknown
    payment, `Conflict` if it is not in review or the action does not fit it."""
    payment = find_payment(session, ref, for_update=True)
    invoice = session.get_one(Invoice, payment.invoice_id, with_for_update=True)
    fulfilled = payment.fulfilled_at is not None
    if action == Action.DELIVER:
        return _deliver(session, fulfilment, payment, invoice, reason, now)
    if action == Action.REFUNDED and fulfilled and is_refunded(invoice) and payment.needs_review is None:
        logger.info("payment %s (%s): refunded already; nothing changed", payment.id, payment.provider_payment_id)
        return Resolution(payment, False)
    if payment.needs_review is None and not (action == Action.REFUNDED and fulfilled):
        raise Conflict(f"payment {payment.id} ({payment.provider_payment_id}) is not in review")
    stars = session.scalar(select(StarPayment.id).where(StarPayment.payment_id == payment.id))
    if action == Action.REFUNDED and stars is not None:
        raise Conflict(f"payment {payment.id} was paid in Stars: refund it through Telegram with "
                       f"`telepay payments refund {stars}`")
    before = {"status": payment.status.value, "invoice_status": invoice.status.value,
              "needs_review": payment.needs_review, "fulfilled": fulfilled}
    refund = None
    if action == Action.FULFIL:
        if fulfilled:
            raise Conflict(f"payment {payment.id} is fulfilled already")
        if invoice.status == InvoiceStatus.COMPLETED:
            raise Conflict(f"invoice {invoice.id} was completed by another payment; dismiss or mark refunded")
        complete_invoice(session, fulfilment, invoice, payment, now)
    elif action == Action.REFUNDED:
        payment.status = PaymentStatus.REFUNDED
        if fulfilled:
            refund = refund_fulfilled(session, fulfilment.jobs, payment, invoice, now,
                                      source=f"an operator marked it refunded: {reason}")
        elif invoice.status in OPEN_INVOICE:
            invoice.status = InvoiceStatus.REFUNDED
    # The operator has decided: a share sent already is theirs to recover, as the output says.
    payment.needs_review = None
    payment.updated_at = now
    after = {"payment_id": payment.id, "status": payment.status.value, "invoice_status": invoice.status.value,
             "reason": reason}
    if refund is not None and refund.withdrawal is not None:
        after |= {"share": refund.withdrawal.outcome.value, "payout_id": refund.withdrawal.payout_id}
    session.add(AuditLog(channel_id=invoice.channel_id, actor_user_id=CLI_ACTOR, action=f"payment.{action.value}",
                         before={"payment_id": payment.id, **before}, after=after, created_at=now))
    session.flush()
    logger.info("payment %s (%s), invoice %s: resolved by the operator: %s (%s)", payment.id,
                payment.provider_payment_id, invoice.id, action.value, reason,
                extra={"payment_id": payment.provider_payment_id, "invoice_id": invoice.id})
    return Resolution(payment, True, refund)


def _deliver(session: Session, fulfilment: Fulfilment, payment: Payment, invoice: Invoice, reason: str,
             now: datetime) -> Resolution:
    """A buyer in the delivery queue (moved to review, or still waiting) is let in after all: the
    operator chose access over a refund once the pair is live again."""
    invite = session.scalars(select(Invite).where(
        Invite.invoice_id == invoice.id, Invite.status.in_((InviteStatus.REVIEW, InviteStatus.WAITING)))
        .with_for_update()).first()
    if invite is None or payment.fulfilled_at is None or is_refunded(invoice):
        raise Conflict(f"payment {payment.id} ({payment.provider_payment_id}) has no buyer waiting to be let in")
    channel = session.get_one(Channel, invoice.channel_id)
    if channel.status != ChannelStatus.ACTIVE:
        raise Conflict(f"channel {channel.id} is {channel.status.value} ({channel.status_reason or 'not live'}): "
                       "the buyer can be let in once it is live again")
    before = {"payment_id": payment.id, "invite_status": invite.status.value}
    let_in(session, fulfilment.jobs, invite, now, "operator")
    session.add(AuditLog(channel_id=invoice.channel_id, actor_user_id=CLI_ACTOR, action="payment.deliver",
                         before=before, after={"payment_id": payment.id, "invite_status": invite.status.value,
                                               "reason": reason}, created_at=now))
    session.flush()
    logger.info("payment %s (%s), invoice %s: the operator let the buyer in (%s)", payment.id,
                payment.provider_payment_id, invoice.id, reason,
                extra={"payment_id": payment.provider_payment_id, "invoice_id": invoice.id, "user_id": invite.user_id})
    return Resolution(payment, True)
