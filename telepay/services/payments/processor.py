"""The `payment.process` job: a payment's stored IPNs turned into its state and what follows.

One transaction per run, holding the payment row (`FOR UPDATE`), so concurrent runs for one
payment take turns and each sees what the one before did. A run does not apply "its" event but
recomputes the payment from every event stored so far (`state.furthest`): the order jobs run in
does not matter, and a run that finds nothing new changes nothing.

Where each status leads (the invoice's status in brackets; messages are queued jobs):

* confirming / confirmed / sending: the buyer hears once that the payment is on its way.
* finished, enough paid (within PAYMENT_UNDERPAID_TOLERANCE_PERCENT): the invoice completes
  [completed] and is fulfilled (`Fulfilment`: subscription or thanks, share, owner notified),
  also after an earlier `failed` or `expired` of the same payment: the money did arrive.
* finished, too little: nothing is granted [partially_paid]; the buyer is told what is missing;
  operators review it (`needs_review`).
* partially_paid: [partially_paid]; the buyer is told what is missing, and sends it to the same
  address: NOWPayments reports that top-up as a new payment naming its parent (a re-deposit).
  Once the parent and its top-ups together cover the price (within the tolerance) the invoice
  completes, fulfilled through the top-up that completed it.
* failed / expired: [failed / expired], unless the invoice completed already; the buyer is told.
* refunded before fulfilment: [refunded]; the buyer is told.
* refunded after fulfilment: [refunded]; what it granted is taken back (`refunds`: the owner's
  unfunded share withdrawn, the days it added taken off the subscription, buyer, owner and
  operators told); a share already sent goes to review.
* a second payment for a completed invoice, a re-deposit after the invoice completed or closed,
  a status we don't know, or a price that is not our invoice's: nothing automatic; `needs_review`
  says why, operators are alerted (ADMIN_CHAT_IDS) and the buyer is told the team will look at
  it where there is something to tell.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot

from telepay.clock import Clock
from telepay.models import (
    Channel, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentEvent, PaymentStatus,
)
from telepay.services.fulfilment import Fulfilment
from telepay.services.ipn import PROCESS_JOB
from telepay.services.jobs import ClaimedJob, JobKind, JobQueue
from telepay.services.messages import alert_operators, queue_message
from telepay.services.payments import texts, topup
from telepay.services.payments.refunds import refund_fulfilled
from telepay.services.payments.state import (
    IN_FLIGHT, apply_amounts, furthest, price_mismatch, shortfall, unknown,
)

logger = logging.getLogger(__name__)

S = PaymentStatus
OPEN_INVOICE = (InvoiceStatus.CREATED, InvoiceStatus.PENDING, InvoiceStatus.PARTIALLY_PAID)


# Nothing for a job to do: its event is applied, or a due, not yet started job of a later event
# of the payment will read every event, this one included, when it runs.
_SUPERSEDED = text("""
SELECT EXISTS (SELECT 1 FROM payment_events WHERE id = :event_id AND processed_at IS NOT NULL)
    OR EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND run_at <= :now AND kind = :kind
               AND payload->>'provider_payment_id' = :payment_id
               AND CAST(payload->>'event_id' AS bigint) > :event_id)
""")


class PaymentProcessor:
    """Applies a payment's IPNs. Call `process` in a thread; the instance is the job handler."""

    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, *,
                 fulfilment: Fulfilment, tolerance_percent: Decimal):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock
        self.fulfilment = fulfilment
        self.tolerance_percent = tolerance_percent

    async def __call__(self, job: ClaimedJob) -> None:
        await asyncio.to_thread(self.process, job.payload["provider_payment_id"], job.payload.get("event_id"))

    def process(self, provider_payment_id: str, event_id: int | None = None) -> PaymentStatus | None:
        """Bring the payment up to date with its events; returns its status (None: unknown, or
        nothing left to do for `event_id`, the event the job was queued for).

        A payment's IPNs come in a burst (waiting, confirming, ... finished), one job each, and
        runs for one payment take turns on its row lock. So a job whose event another run has
        already applied, or that a queued job of a later event will apply, stops at once: the run
        that brings the final status is not kept waiting behind runs with nothing new to do.
        """
        now = self.clock.now()
        with self.session_factory.begin() as session:
            if event_id is not None and session.execute(_SUPERSEDED, {
                    "event_id": event_id, "payment_id": provider_payment_id, "kind": PROCESS_JOB,
                    "now": now}).scalar_one():
                logger.debug("payment %s: event %s applied or left to a later job", provider_payment_id, event_id)
                return None
            payment = session.scalars(select(Payment).where(Payment.provider_payment_id == provider_payment_id)
                                      .with_for_update()).one_or_none()
            if payment is None:
                logger.warning("payment %s: no such payment; nothing to process", provider_payment_id)
                return None
            events = list(session.scalars(select(PaymentEvent).where(
                PaymentEvent.provider_payment_id == provider_payment_id).order_by(PaymentEvent.id)))
            if any(e.id == event_id and e.processed_at is not None for e in events):
                return payment.status  # the run we waited for applied it
            invoice = session.get(Invoice, payment.invoice_id, with_for_update=True)
            strange = unknown(events)
            if strange:
                statuses = ", ".join(sorted({event.status for event in strange}))
                _Run(self, session, payment, invoice, now).review(
                    "unknown_status", "❓ Payment status we don't know",
                    f"NOWPayments reported status {statuses!r}; it is stored, nothing was changed.")
            decisive = furthest(events)
            if decisive is None:
                self._mark_processed(session, events, now)
                return payment.status
            status = S(decisive.status)
            if status != payment.status:
                logger.info("payment %s (%s): %s -> %s", payment.id, provider_payment_id, payment.status.value,
                            status.value)
            apply_amounts(payment, decisive.body)
            payment.status = status
            payment.updated_at = now
            session.flush()
            run = _Run(self, session, payment, invoice, now)
            mismatch = None if payment.parent_payment_id else price_mismatch(decisive.body, invoice.price_usd)
            if mismatch:
                # (A re-deposit reports NOWPayments' own figure for the extra deposit, not our
                # price: its documented example says 1 USD. It is judged by what arrived.)
                run.review("price_mismatch", "🚩 Payment for a price that is not our invoice's",
                           f"The IPN says {mismatch}; nothing was granted.")
            else:
                run.act(status)
            self._mark_processed(session, events, now)
            return status

    @staticmethod
    def _mark_processed(session: Session, events: list[PaymentEvent], now: datetime) -> None:
        # Only the events this run read: one stored since is not applied yet, and its own job
        # must not take it for done.
        unmarked = [event.id for event in events if event.processed_at is None]
        if unmarked:
            session.execute(update(PaymentEvent).where(PaymentEvent.id.in_(unmarked)).values(processed_at=now))


def complete_invoice(session: Session, fulfilment: Fulfilment, invoice: Invoice, payment: Payment,
                     now: datetime) -> None:
    """Complete the invoice through this payment and fulfil it: what a finished payment gets, and
    what an operator's `payments resolve --action fulfil` gives a payment in review."""
    invoice.status, invoice.completed_at = InvoiceStatus.COMPLETED, now
    payment.fulfilled_at = now
    session.flush()
    allocation = fulfilment.fulfil(session, invoice, payment, now)
    logger.info("payment %s (%s): invoice %s completed; share %s USD", payment.id, payment.provider_payment_id,
                invoice.id, allocation.owner_share_usd if allocation else None)


class _Run:
    """One processing run's view of one payment; every effect is deduplicated or state-guarded."""

    def __init__(self, processor: PaymentProcessor, session: Session, payment: Payment, invoice: Invoice,
                 now: datetime):
        self.p, self.session, self.payment, self.invoice, self.now = processor, session, payment, invoice, now
        self.channel = session.get(Channel, invoice.channel_id)
        self.what = (f"“{self.channel.closed_title}” ({invoice.days} days)" if invoice.kind == InvoiceKind.SUBSCRIPTION
                     else f"your donation to “{self.channel.open_title}”")
        self.ref = payment.provider_payment_id

    def for_payment(self, payment: Payment) -> _Run:
        """The same run's view of another payment of the same invoice (a top-up's parent)."""
        return _Run(self.p, self.session, payment, self.invoice, self.now)

    def act(self, status: PaymentStatus) -> None:
        payment, invoice = self.payment, self.invoice
        if payment.parent_payment_id:
            if status in (S.FINISHED, S.PARTIALLY_PAID):
                self.redeposit(status)
            elif status == S.REFUNDED and payment.fulfilled_at is not None:
                self.refunded()  # a top-up counted towards the price: the purchase is undone
            return
        if status in IN_FLIGHT and invoice.status in OPEN_INVOICE:
            self.tell("seen", texts.payment_seen(self.what), unless_completed=True)
        elif status == S.FINISHED:
            self.finished()
        elif status == S.PARTIALLY_PAID and invoice.status in OPEN_INVOICE:
            invoice.status = InvoiceStatus.PARTIALLY_PAID
            if not topup.complete(self):  # its top-ups may have been processed first
                self.tell_shortfall()
        elif status in (S.FAILED, S.EXPIRED) and invoice.status in OPEN_INVOICE:
            # (An invoice another payment completed stays completed, and its buyer is not told
            # that "nothing was activated".)
            invoice.status = InvoiceStatus.FAILED if status == S.FAILED else InvoiceStatus.EXPIRED
            self.tell(status.value, texts.failed(self.what) if status == S.FAILED else texts.expired(self.what))
        elif status == S.REFUNDED:
            self.refunded()

    def finished(self) -> None:
        payment, invoice = self.payment, self.invoice
        if payment.fulfilled_at is not None:
            return  # done before: a repeat, or a late event for an older status
        if invoice.status == InvoiceStatus.COMPLETED:
            self.review("second_payment", "💸 Second payment for a completed invoice",
                        f"{self.paid()} arrived for an invoice another payment already completed.",
                        texts.extra_payment(self.what, self.paid()))
            return
        missing = shortfall(payment, invoice, self.p.tolerance_percent)
        if missing is not None and topup.complete(self):
            return
        if missing is not None:
            invoice.status = InvoiceStatus.PARTIALLY_PAID
            self.tell_shortfall(missing)
            self.review("underpaid", "⚠️ Finished payment below the price",
                        f"Received {self.paid()} for a price of {texts.usd(invoice.price_usd)}; nothing granted.")
            return
        if invoice.status in (InvoiceStatus.EXPIRED, InvoiceStatus.FAILED):
            logger.warning("payment %s (%s): finished after its invoice %s was %s; fulfilling it (the money "
                           "arrived)", payment.id, self.ref, invoice.id, invoice.status.value)
        self.complete()

    def redeposit(self, status: PaymentStatus) -> None:
        """A deposit to the address of an earlier payment: the top-up the buyer was asked for, or,
        once the invoice is done with, money nobody asked for."""
        if self.payment.fulfilled_at is not None:
            return
        if self.invoice.status in OPEN_INVOICE and (topup.complete(self) or topup.pending(self)):
            return
        self.review("redeposit", "💸 Re-deposit received",
                    f"An extra deposit of {self.paid()} to the address of payment {self.payment.parent_payment_id} "
                    f"(invoice {self.invoice.status.value}).", texts.extra_payment(self.what, self.paid()))

    def complete(self) -> None:
        """Complete the invoice through this (finished) payment and fulfil it."""
        complete_invoice(self.session, self.p.fulfilment, self.invoice, self.payment, self.now)

    def refunded(self) -> None:
        payment, invoice = self.payment, self.invoice
        if payment.fulfilled_at is not None:
            refund_fulfilled(self.session, self.p.jobs, payment, invoice, self.now,
                             source="NOWPayments reported it refunded")
            return
        if invoice.status in OPEN_INVOICE:
            invoice.status = InvoiceStatus.REFUNDED
            self.tell("refunded", texts.refunded(self.what))

    # ---- effects ------------------------------------------------------------------------------

    def paid(self) -> str:
        return texts.crypto(self.payment.actually_paid, self.payment.pay_currency)

    def tell(self, topic: str, text: str, *, unless_completed: bool = False) -> None:
        queue_message(self.session, self.p.jobs, self.invoice.buyer_user_id, text,
                      dedupe_key=f"buyer:{self.ref}:{topic}",
                      unless_completed=self.invoice.id if unless_completed else None)

    def tell_shortfall(self, missing=None) -> None:
        missing = missing or shortfall(self.payment, self.invoice, Decimal(0))
        if missing is None:
            return
        text = texts.partially_paid(self.what, self.paid(),
                                    texts.crypto(missing.missing, self.payment.pay_currency)
                                    if missing.missing is not None else "part of the price", missing.missing_usd)
        self.tell("partially_paid", text)

    def review(self, reason: str, title: str, detail: str, buyer_text: str | None = None) -> None:
        """Leave it to the operators: say why on the payment, alert them once, tell the buyer once."""
        if self.payment.needs_review is None:
            self.payment.needs_review = f"{reason}: {detail}"
            logger.warning("payment %s (%s), invoice %s: needs review: %s", self.payment.id, self.ref,
                           self.invoice.id, reason)
        alert_operators(self.session, self.p.jobs, texts.operator_note(title, self.ref, self.invoice.id, detail),
                        key=f"{reason}:{self.ref}")
        if buyer_text:
            self.tell(reason, buyer_text)


class _Needs(Protocol):
    payments: PaymentProcessor


def _processor(services: _Needs, bot: Bot) -> PaymentProcessor:
    return services.payments


JOB_KINDS = (JobKind(PROCESS_JOB, _processor),)
