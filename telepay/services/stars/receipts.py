"""A `successful_payment` in Stars turned into the same fulfilment as a crypto payment, once.

One transaction per payment: the `star_payments` row is inserted first, keyed on
`telegram_payment_charge_id`, so a repeated update (Telegram re-delivering, a restart before the
offset was confirmed) finds it and changes nothing. Then the payment is matched to the invoice
its payload names. Anything that doesn't match (a payload we never issued, a currency or amount
other than invoiced, a second payment of a closed invoice) is kept for review: nothing is
granted, the operators are alerted, the buyer is told the team will sort it out.

A match completes the invoice (a recurring charge completes a new invoice, a renewal of the one
that started the subscription), records a `payments` row for it, and calls `Fulfilment` with the
owner's share held until Telegram's withdrawal hold has passed (`StarPayment.release_at`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import (
    Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentMethod, PaymentStatus, ShareStatus, StarPayment,
    StarPaymentStatus, Subscription,
)
from telepay.services.fulfilment import Fulfilment, HeldShare
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators, queue_message
from telepay.services.stars import texts
from telepay.services.stars.pricing import stars_split

logger = logging.getLogger(__name__)

# Our end of a Star subscription is Telegram's next charge plus this: a renewal that arrives a
# little late never removes a subscriber who is about to be charged.
RENEWAL_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class Receipt:
    star_payment_id: int
    status: StarPaymentStatus
    created: bool  # False: this charge was recorded before; nothing changed


class StarsReceipts:
    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, *,
                 fulfilment: Fulfilment, rate: Decimal, fee_percent: Decimal, hold_days: int):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock
        self.fulfilment = fulfilment
        self.rate = rate
        self.fee_percent = fee_percent
        self.hold = timedelta(days=hold_days)

    def record(self, user_id: int, username: str | None, paid: dict[str, Any]) -> Receipt:
        """Record and act on one `successful_payment` (its Bot API fields as a dict)."""
        now = self.clock.now()
        charge_id = str(paid["telegram_payment_charge_id"])
        amount = int(paid["total_amount"])
        expires = paid.get("subscription_expiration_date")
        value = Decimal(amount) * self.rate if amount > 0 else Decimal(0)
        with self.session_factory.begin() as session:
            new_id = session.execute(
                insert(StarPayment).values(
                    charge_id=charge_id, user_id=user_id, stars=max(amount, 1), payload=str(paid["invoice_payload"]),
                    is_recurring=bool(paid.get("is_recurring")) and not paid.get("is_first_recurring"),
                    subscription_expires_at=datetime.fromtimestamp(expires, timezone.utc) if expires else None,
                    status=StarPaymentStatus.REVIEW, rate_usd=self.rate, usd_value=value, raw=dict(paid),
                    received_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["charge_id"]).returning(StarPayment.id)).scalar_one_or_none()
            if new_id is None:
                row = session.scalars(select(StarPayment).where(StarPayment.charge_id == charge_id)).one()
                logger.info("stars charge %s: seen before (star payment %s); nothing to do", charge_id, row.id)
                return Receipt(row.id, row.status, False)
            row = session.get(StarPayment, new_id)
            invoice = session.get(Invoice, row.payload) if _is_uuid(row.payload) else None
            problem = self._mismatch(row, invoice, paid, user_id, amount)
            if problem:
                self._review(session, row, *problem)
            else:
                self._fulfil(session, row, invoice, username, now)
            return Receipt(row.id, row.status, True)

    def _mismatch(self, row: StarPayment, invoice: Invoice | None, paid: dict, user_id: int,
                  amount: int) -> tuple[str, str] | None:
        if invoice is None or invoice.method != PaymentMethod.STARS:
            return "unknown_payload", f"Payload {row.payload!r} names no Stars invoice we issued."
        if invoice.buyer_user_id != user_id:
            return "other_buyer", f"Invoice {invoice.id} was made for user {invoice.buyer_user_id}."
        if paid.get("currency") != "XTR" or amount != invoice.price_stars:
            return "amount_differs", (f"Paid {amount} {paid.get('currency')}; invoice {invoice.id} asked "
                                      f"{invoice.price_stars} XTR.")
        if row.is_recurring and not invoice.star_subscription:
            return "not_a_subscription", f"A recurring charge for invoice {invoice.id}, which is not a subscription."
        if not row.is_recurring and invoice.status != InvoiceStatus.PENDING:
            return "invoice_closed", f"Invoice {invoice.id} is {invoice.status.value}; a second payment for it."
        return None

    def _review(self, session: Session, row: StarPayment, reason: str, detail: str) -> None:
        row.status, row.needs_review = StarPaymentStatus.REVIEW, f"{reason}: {detail}"
        logger.warning("stars charge %s (star payment %s): needs review: %s", row.charge_id, row.id, reason)
        alert_operators(session, self.jobs,
                        texts.operator_review(reason, row.charge_id, row.user_id, row.stars, detail),
                        key=f"stars:{reason}:{row.id}")
        queue_message(session, self.jobs, row.user_id, texts.received_for_review(row.stars),
                      dedupe_key=f"buyer:stars:{row.id}:review")

    def _fulfil(self, session: Session, row: StarPayment, invoice: Invoice, username: str | None,
                now: datetime) -> None:
        session.refresh(invoice, with_for_update=True)
        target = invoice
        if row.is_recurring:
            target = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=invoice.channel_id,
                             tier_id=invoice.tier_id, buyer_user_id=row.user_id,
                             buyer_username=username or invoice.buyer_username, price_usd=invoice.price_usd,
                             days=invoice.days, method=PaymentMethod.STARS, price_stars=row.stars,
                             star_subscription=True, renewal_of=invoice.id, created_at=now)
            session.add(target)
        target.status, target.completed_at = InvoiceStatus.COMPLETED, now
        value, share, fee = stars_split(row.stars, self.rate, self.fee_percent)
        payment = Payment(provider_payment_id=f"xtr-{row.id}", invoice_id=target.id, status=PaymentStatus.FINISHED,
                          pay_currency="XTR", pay_amount=Decimal(row.stars), actually_paid=Decimal(row.stars),
                          actually_paid_usd=value, price_amount=value, fulfilled_at=now, created_at=now,
                          updated_at=now)
        session.add(payment)
        session.flush()
        row.invoice_id, row.payment_id, row.status = target.id, payment.id, StarPaymentStatus.FULFILLED
        row.share_usd, row.fee_usd = share, fee
        row.share_status, row.release_at = ShareStatus.HELD, now + self.hold
        self.fulfilment.fulfil(session, target, payment, now,
                               held=HeldShare(row.release_at, share, texts.stars(row.stars)))
        if target.kind == InvoiceKind.SUBSCRIPTION and invoice.star_subscription:
            self._keep_renewing(session, row, target)
        logger.info("stars charge %s (star payment %s): invoice %s completed; %s Stars = %s USD, share %s held "
                    "until %s", row.charge_id, row.id, target.id, row.stars, value, share, row.release_at)

    def _keep_renewing(self, session: Session, row: StarPayment, invoice: Invoice) -> None:
        subscription = session.scalars(select(Subscription).where(
            Subscription.channel_id == invoice.channel_id, Subscription.user_id == row.user_id)).one()
        if not row.is_recurring or subscription.star_charge_id is None:
            subscription.star_charge_id = row.charge_id
        subscription.star_renews = True
        if row.subscription_expires_at is not None:
            subscription.expires_at = max(subscription.expires_at, row.subscription_expires_at + RENEWAL_GRACE)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
