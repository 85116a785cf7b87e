"""Payment processing as NOWPayments really behaves: top-ups after `partially_paid` (re-deposits
naming their parent), `finished` after `expired`, statuses we don't know, and IPNs whose price is
not our invoice's. IPNs recorded as the webhook records them, the job run directly."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import select

from telepay.api.schemas import IpnIn
from telepay.models import (
    Invoice, InvoiceStatus, Payment, PaymentEvent, PaymentStatus, Payout, PayoutStatus, Subscription,
    SubscriptionStatus,
)
from telepay.services.fulfilment import INVITE_JOB
from telepay.services.ipn import record_ipn
from telepay.services.messages import ALERT_JOB, DIRECT_JOB
from tests.services.payments_rig import BUYER, _count, _invoice, _jobs


def _record(session_factory, clock, body) -> str:
    with session_factory.begin() as session:
        return record_ipn(session, IpnIn.model_validate(body), body, json.dumps(body, default=str), clock.now())


def _body(invoice_id, payment_id, status, *, paid="0.004", pay="0.004", parent=None, **extra):
    body = {"payment_id": payment_id, "parent_payment_id": parent, "invoice_id": None if parent else 6417549628,
            "payment_status": status, "order_id": None if parent else invoice_id,
            "price_amount": Decimal("10.00"), "price_currency": "usd", "pay_amount": Decimal(pay),
            "actually_paid": Decimal(paid), "actually_paid_at_fiat": Decimal(0), "pay_currency": "eth"}
    body.update(extra)
    return body


def _operator_alerts(session_factory):
    return _jobs(session_factory, ALERT_JOB)


def _buyer_texts(session_factory):
    return [job.payload["text"] for job in _jobs(session_factory, DIRECT_JOB) if job.payload["chat_id"] == BUYER]


def test_a_top_up_after_partially_paid_completes_the_purchase(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    for status in ("waiting", "confirming", "partially_paid"):
        _record(session_factory, clock, _body(invoice_id, "5001", status, paid="0.0015"))
    processor.process("5001")
    assert "so 0.0025 ETH" in _buyer_texts(session_factory)[-1]

    # The first top-up is short too: the buyer hears what is still missing, nothing is granted.
    for status in ("confirming", "finished"):
        _record(session_factory, clock, _body(invoice_id, "5002", status, paid="0.001", pay="0.001", parent="5001"))
    processor.process("5002")
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.PARTIALLY_PAID
    assert "we received 0.0025 ETH, so 0.0015 ETH" in _buyer_texts(session_factory)[-1]

    # The second brings the total within the tolerance (0.5 %) of the price: completed, once.
    _record(session_factory, clock, _body(invoice_id, "5003", "finished", paid="0.00149", pay="0.00149",
                                          parent="5001"))
    processor.process("5003")
    processor.process("5003")
    processor.process("5002")
    with session_factory() as session:
        invoice = session.get(Invoice, invoice_id)
        completing = session.scalars(select(Payment).where(Payment.provider_payment_id == "5003")).one()
        subscription = session.scalars(select(Subscription)).one()
        assert completing.invoice_id == invoice_id  # linked through its parent: it had no order id
    assert invoice.status == InvoiceStatus.COMPLETED and subscription.user_id == BUYER
    assert completing.fulfilled_at is not None
    # The share is the whole sale's (three deposits worth 9.975 USD), allocated once.
    assert completing.owner_share_usd + completing.platform_fee_usd == Decimal("9.975")
    assert len(_jobs(session_factory, INVITE_JOB)) == 1 and _operator_alerts(session_factory) == []


def test_top_up_processed_before_its_parent_completes_when_the_parent_arrives(session_factory, clock, processor,
                                                                              channel):
    invoice_id = _invoice(session_factory, channel)
    _record(session_factory, clock, _body(invoice_id, "5101", "confirming", paid="0.002"))
    _record(session_factory, clock, _body(invoice_id, "5102", "finished", paid="0.002", pay="0.002", parent="5101"))
    processor.process("5102")  # the parent has not ended: wait, no alarm
    assert _operator_alerts(session_factory) == []
    _record(session_factory, clock, _body(invoice_id, "5101", "partially_paid", paid="0.002"))
    processor.process("5101")
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.COMPLETED
    assert len(_jobs(session_factory, INVITE_JOB)) == 1


def test_a_deposit_after_finished_goes_to_review_with_an_alert(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    _record(session_factory, clock, _body(invoice_id, "5201", "finished"))
    processor.process("5201")
    _record(session_factory, clock, _body(invoice_id, "5202", "finished", paid="0.001", pay="0.001", parent="5201"))
    processor.process("5202")
    with session_factory() as session:
        extra = session.scalars(select(Payment).where(Payment.provider_payment_id == "5202")).one()
    assert extra.needs_review.startswith("redeposit") and extra.fulfilled_at is None
    assert len(_operator_alerts(session_factory)) == 1 and len(_jobs(session_factory, INVITE_JOB)) == 1


def test_finished_after_expired_is_fulfilled(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    for status in ("waiting", "expired"):
        _record(session_factory, clock, _body(invoice_id, "5301", status, paid="0"))
    processor.process("5301")
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.EXPIRED
    for status in ("confirming", "finished"):
        _record(session_factory, clock, _body(invoice_id, "5301", status))
    processor.process("5301")
    _record(session_factory, clock, _body(invoice_id, "5301", "failed"))  # a late end state moves nothing
    processor.process("5301")
    with session_factory() as session:
        payment = session.scalars(select(Payment)).one()
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.COMPLETED
    assert payment.status == PaymentStatus.FINISHED and payment.fulfilled_at is not None
    assert len(_jobs(session_factory, INVITE_JOB)) == 1


def test_a_status_we_do_not_know_is_stored_and_reviewed(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    assert _record(session_factory, clock, _body(invoice_id, "5401", "cancelled", paid="0")) == "accepted"
    processor.process("5401")
    with session_factory() as session:
        payment = session.scalars(select(Payment)).one()
        event = session.scalars(select(PaymentEvent)).one()
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.PENDING
    assert event.status == "cancelled" and payment.status == PaymentStatus.WAITING
    assert payment.needs_review.startswith("unknown_status") and len(_operator_alerts(session_factory)) == 1


def test_a_price_that_is_not_our_invoices_never_completes_it(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel, price="5.00")
    _record(session_factory, clock, _body(invoice_id, "5501", "finished", price_amount=Decimal("0.25")))
    other = _invoice(session_factory, channel, price="10.00")
    _record(session_factory, clock, _body(other, "5502", "finished", price_currency="eur"))
    for payment_id in ("5501", "5502"):
        processor.process(payment_id)
    with session_factory() as session:
        assert {session.get(Invoice, i).status for i in (invoice_id, other)} == {InvoiceStatus.PENDING}
        reviews = [p.needs_review for p in session.scalars(select(Payment).order_by(Payment.id))]
    assert all(review.startswith("price_mismatch") for review in reviews)
    assert "0.25" in reviews[0] and "'eur'" in reviews[1]
    assert len(_operator_alerts(session_factory)) == 2 and _count(session_factory, Subscription) == 0


def test_a_refund_of_a_counted_deposit_takes_back_the_purchase_and_the_share_its_top_up_carries(
        session_factory, clock, processor, channel):
    """The share of a topped-up purchase sits on the deposit that completed it: refunding the
    first deposit (or the top-up) still cancels it, once."""
    invoice_id = _invoice(session_factory, channel)
    for status in ("waiting", "confirming", "partially_paid"):
        _record(session_factory, clock, _body(invoice_id, "5801", status, paid="0.002"))
    processor.process("5801")
    _record(session_factory, clock, _body(invoice_id, "5802", "finished", paid="0.002", pay="0.002", parent="5801"))
    processor.process("5802")
    with session_factory() as session:
        top_up = session.scalars(select(Payment).where(Payment.provider_payment_id == "5802")).one()
        assert top_up.owner_share_usd is not None and top_up.payout_id is not None

    _record(session_factory, clock, _body(invoice_id, "5801", "refunded", paid="0.002"))
    processor.process("5801")
    _record(session_factory, clock, _body(invoice_id, "5802", "refunded", paid="0.002", pay="0.002", parent="5801"))
    processor.process("5802")

    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.REFUNDED
        assert session.get(Payout, top_up.payout_id).status == PayoutStatus.CANCELLED
        assert session.scalars(select(Subscription)).one().status == SubscriptionStatus.EXPIRED
    (alert,) = [job.payload["text"] for job in _operator_alerts(session_factory)]
    assert "NOWPayments 5801" in alert and f"payout {top_up.payout_id}, pending: cancelled by TelePay" in alert
    assert sum("access has ended" in text for text in _buyer_texts(session_factory)) == 1
