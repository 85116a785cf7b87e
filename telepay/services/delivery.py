"""Delivery before money: the queue of buyers who paid but are not in yet, and the owner's share
released only once access was delivered.

* A subscription's invoice is *delivered* (`invoices.access_delivered_at`) when its invite was
  sent, or the buyer was found already in the channel. Only then is its share paid out:
  `awaiting_delivery` is the one condition the payout path asks, and `mark_delivered` queues
  the payouts that were waiting for it.
* A buyer whose pair is paused waits in the *delivery queue* (`invites.status = waiting`),
  visible to operators (`delivery_queue`, `telepay subscribers show`, status and metrics). When
  the pair resumes they are let in (`telepay.services.rights.resume`).
* Policy (docs/decisions.md): a buyer still waiting after `DELIVERY_DEADLINE` (48 h) is moved to
  review: the operators get an alert naming the invoice, the payment and the commands that act
  on it (crypto refunds are made by hand, then recorded with `telepay payments resolve PAYMENT
  --action refunded`, which cancels the held share), and the buyer is told. Their share stays
  held meanwhile. A purchase paid in Telegram Stars is refunded at once, automatically
  (`stars.refund` job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from telepay.models import (
    Accumulation, Channel, Invite, InviteStatus, Invoice, InvoiceKind, Payment, Payout, StarPayment, StarPaymentStatus,
)
from telepay.models.payouts import PayoutStatus
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators, queue_message
from telepay.services.payouts.allocation import enqueue_payout
from telepay.services.stars.refunds import queue_refund

logger = logging.getLogger(__name__)

DELIVERY_DEADLINE = timedelta(hours=48)
DELIVERED_INVITES = (InviteStatus.SENT, InviteStatus.UNDELIVERED, InviteStatus.USED)


@dataclass(frozen=True)
class Waiting:
    """One paying buyer in the delivery queue."""

    invite_id: int
    invoice_id: str | None
    channel_id: int
    channel_title: str
    user_id: int
    since: datetime
    status: InviteStatus       # waiting, or review once the deadline passed


def delivery_queue(session: Session, *, include_review: bool = True) -> list[Waiting]:
    """Every buyer who paid and is not let in yet, oldest first (for status, metrics and the CLI)."""
    statuses = [InviteStatus.WAITING] + ([InviteStatus.REVIEW] if include_review else [])
    rows = session.execute(
        select(Invite, Channel.id, Channel.closed_title).join(Channel, Channel.closed_chat_id == Invite.chat_id)
        .where(Invite.status.in_(statuses)).order_by(Invite.waiting_since, Invite.id)).all()
    return [Waiting(i.id, i.invoice_id, cid, title, i.user_id, i.waiting_since or i.updated_at, i.status)
            for i, cid, title in rows]


def _payout_ids_of(session: Session, invoice_id: str) -> set[int]:
    payments = list(session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)))
    ids = {p.payout_id for p in payments if p.payout_id is not None}
    if payments:
        ids |= set(session.scalars(select(Accumulation.payout_id).where(
            Accumulation.payment_id.in_([p.id for p in payments]), Accumulation.payout_id.is_not(None))))
    return ids


def mark_delivered(session: Session, jobs: JobQueue, invoice_id: str, now: datetime) -> bool:
    """Record that the invoice's access reached the buyer and queue the payouts that waited; True if news."""
    invoice = session.get(Invoice, invoice_id, with_for_update=True)
    if invoice is None or invoice.access_delivered_at is not None:
        return False
    invoice.access_delivered_at = now
    for payout_id in _payout_ids_of(session, invoice_id):
        enqueue_payout(session, jobs, payout_id, f"delivered:{invoice_id}")
    logger.info("invoice %s: access delivered; its share may be paid out", invoice_id)
    return True


def undelivered_clause(payment_ids):
    """SQL: some of these payments sold a subscription whose access has not been delivered."""
    return exists(select(Invoice.id).join(Payment, Payment.invoice_id == Invoice.id).where(
        Payment.id.in_(payment_ids), Invoice.kind == InvoiceKind.SUBSCRIPTION,
        Invoice.access_delivered_at.is_(None)))


def payout_hold(session: Session, payout_id: int) -> str | None:
    """Why this payout must not start yet, or None: the one question the payout runner asks."""
    payout = session.get(Payout, payout_id)
    if payout is None or payout.channel_id is None:
        return None
    channel = session.get(Channel, payout.channel_id)
    if channel is not None and channel.owner_lost_at is not None:
        return "the registered owner is no longer an admin of the channels"
    payment_ids = select(Payment.id).where(or_(
        Payment.payout_id == payout_id,
        Payment.id.in_(select(Accumulation.payment_id).where(Accumulation.payout_id == payout_id))))
    if session.scalar(select(undelivered_clause(payment_ids))):
        return "a buyer it pays for is not in the channel yet"
    return None


def release_channel_payouts(session: Session, jobs: JobQueue, channel_id: int, reason: str) -> int:
    """Queue every pending payout of the channel again (a hold on it ended); how many."""
    ids = list(session.scalars(select(Payout.id).where(Payout.channel_id == channel_id,
                                                       Payout.status == PayoutStatus.PENDING)))
    for payout_id in ids:
        enqueue_payout(session, jobs, payout_id, reason)
    return len(ids)


def review_overdue(session: Session, jobs: JobQueue, now: datetime) -> int:
    """Move buyers waiting past the deadline to review: operators alerted, buyer told; how many."""
    overdue = list(session.scalars(select(Invite).where(
        Invite.status == InviteStatus.WAITING, Invite.waiting_since <= now - DELIVERY_DEADLINE)
        .with_for_update(skip_locked=True)))
    for invite in overdue:
        invite.status, invite.updated_at = InviteStatus.REVIEW, now
        payment = session.scalars(select(Payment).where(Payment.invoice_id == invite.invoice_id)
                                  .order_by(Payment.id.desc()).limit(1)).first() if invite.invoice_id else None
        named = f"invoice {invite.invoice_id}" + (
            f", payment {payment.id} ({payment.provider_payment_id})" if payment else "")
        stars = session.scalars(select(StarPayment).where(
            StarPayment.payment_id == payment.id, StarPayment.status == StarPaymentStatus.FULFILLED)).first() \
            if payment else None
        if stars is not None:
            # Telegram can refund Stars for us: the buyer does not wait for an operator.
            queue_refund(session, jobs, stars, f"not delivered within {DELIVERY_DEADLINE}")
            alert_operators(session, jobs, f"Refunded automatically: user {invite.user_id} paid {stars.stars} Stars "
                            f"({named}) but could not be let into chat {invite.chat_id} within "
                            f"{DELIVERY_DEADLINE.total_seconds() / 3600:.0f} h.", key=f"refund:{invite.id}")
            logger.warning("invite %s (%s): not delivered within the deadline; Stars refunded", invite.id, named)
            continue
        alert_operators(session, jobs, _refund_due(invite, named, payment), key=f"refund:{invite.id}")
        queue_message(session, jobs, invite.user_id,
                      "I'm sorry: the channel you paid for still can't let you in, so your payment has gone to "
                      "our team for a refund. They'll contact you here.", dedupe_key=f"refund:{invite.id}")
        logger.warning("invite %s (%s): not delivered within the deadline; moved to review", invite.id, named)
    return len(overdue)


def _refund_due(invite: Invite, named: str, payment: Payment | None) -> str:
    """The operators' alert for a crypto buyer moved to review, with the commands that act on it."""
    text = (f"Refund due: user {invite.user_id} paid ({named}) but could not be let into chat {invite.chat_id} "
            f"within {DELIVERY_DEADLINE.total_seconds() / 3600:.0f} h; the owner's share stays held.")
    if payment is not None:
        # The command takes the buyer out of the queue and cancels the share held for them.
        text += (f" Refund them by hand, then record it: `telepay payments resolve {payment.id} --action refunded "
                 '--reason "..."`.')
    return text + f" What they bought and were sent: `telepay subscribers show {invite.user_id}`."
