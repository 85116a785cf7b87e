"""The owner's Stars share: released to the payout engine once Telegram's hold has passed, or
cancelled by a refund that comes first; and what a refund does to access.

Release (`ShareReleaser.run_once`, a timer): every held share whose `release_at` has passed is
handed to `allocate_share` in the same transaction that marks it released: an instant payout
or a threshold share, exactly as a crypto payment's would be at once.

Refund (`apply_refund`): called after Telegram has refunded a charge (by our command, or on the
`refunded_payment` update); idempotent on the charge. A held share is cancelled (the owner
never gets it, the platform keeps no fee: the whole value went back). A released one has been
paid out or is being paid out: the payment goes to review. The time the payment bought ends,
and buyer, owner and operators are told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import (
    Channel, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus, ShareStatus, StarPayment,
    StarPaymentStatus,
)
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators, queue_message
from telepay.services.notifications import request_owner_notification
from telepay.services.payouts import allocate_share
from telepay.services.stars import texts
from telepay.services.subscriptions import take_back_days

logger = logging.getLogger(__name__)

TIMER_NAME = "stars.release"


class ShareReleaser:
    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, *,
                 fee_percent: Decimal, batch_size: int = 100):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock
        self.fee_percent = fee_percent
        self.batch_size = batch_size

    def run_once(self) -> int:
        """Release every share whose hold has passed; how many were released."""
        released = 0
        while True:
            now = self.clock.now()
            with self.session_factory.begin() as session:
                due = list(session.scalars(
                    select(StarPayment).where(StarPayment.share_status == ShareStatus.HELD,
                                              StarPayment.release_at <= now)
                    .order_by(StarPayment.release_at).limit(self.batch_size).with_for_update(skip_locked=True)))
                for row in due:
                    allocation = allocate_share(session, self.jobs, row.payment_id, fee_percent=self.fee_percent,
                                                now=now)
                    # The engine's split is the one paid; keep the row in step with it.
                    row.share_usd, row.fee_usd = allocation.owner_share_usd, allocation.platform_fee_usd
                    row.share_status, row.released_at, row.updated_at = ShareStatus.RELEASED, now, now
                    logger.info("star payment %s: share %s USD released (payment %s)", row.id, row.share_usd,
                                row.payment_id)
            released += len(due)
            if len(due) < self.batch_size:
                return released


@dataclass(frozen=True)
class RefundResult:
    star_payment_id: int | None
    applied: bool                  # False: applied before, or nothing of ours
    share_cancelled: Decimal | None
    review: str | None


def apply_refund(session: Session, jobs: JobQueue, charge_id: str, now: datetime) -> RefundResult:
    """Record that Telegram refunded `charge_id`, and end what it paid for. Never commits."""
    row = session.scalars(select(StarPayment).where(StarPayment.charge_id == charge_id)
                          .with_for_update()).one_or_none()
    if row is None:
        alert_operators(session, jobs, f"↩️ Telegram refunded Stars charge {charge_id}, "
                        "which we have no record of.", key=f"stars:refund_unknown:{charge_id}")
        return RefundResult(None, False, None, "unknown charge")
    if row.status == StarPaymentStatus.REFUNDED:
        # Applied already (the `refunded_payment` update often beats the command that caused it).
        cancelled = row.share_usd if row.share_status == ShareStatus.CANCELLED else None
        return RefundResult(row.id, False, cancelled, row.needs_review)
    was = row.status
    row.status, row.refunded_at, row.updated_at = StarPaymentStatus.REFUNDED, now, now
    cancelled = review = None
    if row.share_status == ShareStatus.HELD:
        row.share_status, cancelled = ShareStatus.CANCELLED, row.share_usd
        payment = session.get(Payment, row.payment_id)
        payment.status, payment.updated_at = PaymentStatus.REFUNDED, now
    elif row.share_status == ShareStatus.RELEASED:
        review = (f"refunded after the owner's share of {texts.usd(row.share_usd)} was released "
                  f"(payment {row.payment_id}); recover it from the owner or write it off")
        row.needs_review = review
        session.get(Payment, row.payment_id).needs_review = review
        alert_operators(session, jobs, f"↩️ Stars charge {charge_id}: {review}.",
                        key=f"stars:refund_after_release:{row.id}")
    if was == StarPaymentStatus.FULFILLED:
        _end_access(session, jobs, row, now, cancelled)
    logger.info("star payment %s (charge %s): refunded; share %s", row.id, charge_id,
                "cancelled" if cancelled is not None else ("under review" if review else "none"))
    return RefundResult(row.id, True, cancelled, review)


def _end_access(session: Session, jobs: JobQueue, row: StarPayment, now: datetime,
                cancelled: Decimal | None) -> None:
    invoice = session.get(Invoice, row.invoice_id)
    channel = session.get(Channel, invoice.channel_id)
    invoice.status = InvoiceStatus.REFUNDED
    what = f"“{channel.closed_title}”" if invoice.kind == InvoiceKind.SUBSCRIPTION else \
        f"your donation to “{channel.open_title}”"
    subscription = take_back_days(session, jobs, invoice, now)
    if subscription is not None:
        subscription.star_renews = False
    queue_message(session, jobs, row.user_id, texts.refunded_buyer(what, row.stars),
                  dedupe_key=f"buyer:stars:{row.id}:refunded")
    if channel.notify_enabled and not channel.owner_blocked_bot:
        request_owner_notification(session, jobs, channel.id, texts.refunded_owner(what, row.stars, cancelled),
                                   idempotency_key=f"stars-refund:{row.id}")
