"""Top-ups: completing an underpaid invoice with the rest, sent to the same address.

When a payment arrives short (`partially_paid`, or `finished` below the price) the buyer is told
to send the missing amount to the address from their invoice. NOWPayments treats the short
payment as done, so the top-up arrives as a new payment naming it in `parent_payment_id` (a
re-deposit). The invoice completes once the parent and its top-ups together cover the price,
within PAYMENT_UNDERPAID_TOLERANCE_PERCENT, compared in the coin the invoice was paid in.

The processor's run holds the invoice row `FOR UPDATE`, so the parent's and the top-ups' runs
take turns, and whichever comes last sees every deposit.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from telepay.models import Invoice, Payment, PaymentStatus
from telepay.services.payments import texts


class _Tolerance(Protocol):
    @property
    def tolerance_percent(self) -> Decimal: ...


class _Run(Protocol):
    """What this module needs of the processor's run (`processor._Run`); a protocol, so the two
    modules do not import each other."""

    @property
    def p(self) -> _Tolerance: ...

    session: Session
    payment: Payment
    invoice: Invoice
    now: datetime
    what: str

    def complete(self) -> None: ...

    def tell(self, topic: str, text: str, *, unless_completed: bool = False) -> None: ...

    def for_payment(self, payment: Payment) -> _Run: ...

logger = logging.getLogger(__name__)

S = PaymentStatus
# A deposit has arrived (NOWPayments' word for a short one is `partially_paid`).
ARRIVED = (S.PARTIALLY_PAID, S.FINISHED)
_EIGHT_PLACES = Decimal("0.00000001")


def _family(run: _Run) -> tuple[Payment | None, list[Payment]]:
    """The short payment this run belongs to and its top-ups that have arrived."""
    payment = run.payment
    if payment.parent_payment_id is None:
        parent = payment
    else:
        parent = run.session.scalars(select(Payment).where(
            Payment.provider_payment_id == payment.parent_payment_id)).one_or_none()
    if parent is None or parent.invoice_id != payment.invoice_id:
        return None, []
    children = list(run.session.scalars(select(Payment).where(
        Payment.parent_payment_id == parent.provider_payment_id, Payment.invoice_id == parent.invoice_id,
        Payment.status.in_(ARRIVED)).order_by(Payment.id)))
    return parent, children


def _covered(run: _Run, parent: Payment, children: list[Payment]) -> tuple[Decimal, Decimal] | None:
    """(what arrived, what was asked) in the invoice's coin, or None if it can't be told."""
    if parent.status not in ARRIVED or not parent.pay_amount or parent.actually_paid is None:
        return None
    same_coin = [c for c in children if (c.pay_currency or "").lower() == (parent.pay_currency or "").lower()]
    arrived = parent.actually_paid + sum((c.actually_paid or Decimal(0) for c in same_coin), Decimal(0))
    return arrived, parent.pay_amount


def complete(run: _Run) -> bool:
    """Complete the invoice if the short payment and its top-ups now cover the price."""
    parent, children = _family(run)
    if parent is None or not children:
        return False
    covered = _covered(run, parent, children)
    if covered is None:
        return False
    arrived, asked = covered
    keep = (Decimal(100) - run.p.tolerance_percent) / Decimal(100)
    if arrived < asked * keep:
        return False
    finished = [p for p in [parent, *children] if p.status == S.FINISHED and p.fulfilled_at is None]
    if not finished:
        return False  # only short deposits so far: the operator sees them (review)
    completing = run.payment if run.payment in finished else finished[-1]
    # The sale is the whole invoice, paid in several deposits; the share is allocated once, on
    # the deposit that completed it, for what all of them were worth (never above the price).
    worth = min(run.invoice.price_usd, run.invoice.price_usd * arrived / asked).quantize(_EIGHT_PLACES)
    completing.actually_paid_usd = worth
    for deposit in (parent, *children):
        # Each counted deposit is part of the completion (a later run of one of them is not an
        # extra payment, and a refund of one is the operators' to settle, as for any fulfilled one).
        deposit.fulfilled_at = deposit.fulfilled_at or run.now
    logger.info("invoice %s: top-up payment %s completes it (%s of %s %s arrived in %d deposits)",
                run.invoice.id, completing.provider_payment_id, arrived, asked, parent.pay_currency,
                len(children) + 1)
    completing.fulfilled_at = None  # set again, with the completion, by `complete`
    if completing is run.payment:
        run.complete()
    else:
        run.for_payment(completing).complete()
    return True


def pending(run: _Run) -> bool:
    """For a top-up that did not complete its invoice: wait for its parent's news, or tell the
    buyer what is still missing. False when there is no short parent to top up."""
    parent, children = _family(run)
    if parent is None:
        return False
    if parent.status not in ARRIVED:
        logger.info("top-up %s arrived before its parent %s finished; waiting for the parent",
                    run.payment.provider_payment_id, parent.provider_payment_id)
        return True
    covered = _covered(run, parent, children)
    if covered is None:
        return False
    arrived, asked = covered
    missing = asked - arrived
    if missing <= 0:
        return False  # covered, yet nothing finished to complete it with: the operator looks
    missing_usd = (run.invoice.price_usd * missing / asked).quantize(Decimal("0.01"))
    run.tell("partially_paid", texts.partially_paid(
        run.what, texts.crypto(arrived, parent.pay_currency), texts.crypto(missing, parent.pay_currency),
        missing_usd))
    return True
