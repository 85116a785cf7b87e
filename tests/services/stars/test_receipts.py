"""Stars payments against a real PostgreSQL: pre-checkout decisions, recording once per charge,
bad input kept for review, renewals, the held share's release and a refund's effects."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from telepay.clock import ManualClock
from telepay.models import (
    Channel, ChannelStatus, Invoice, InvoiceStatus, Job, Payment, PaymentStatus, Payout, ShareStatus,
    StarPayment, StarPaymentStatus, Subscription, Tier,
)
from telepay.services.fulfilment import INVITE_JOB, Fulfilment
from telepay.services.jobs import JobQueue
from telepay.services.messages import ALERT_JOB
from telepay.services.stars import texts
from telepay.services.stars.checkout import StarsCheckout
from telepay.services.stars.holds import ShareReleaser, apply_refund
from telepay.services.stars.receipts import RENEWAL_GRACE, StarsReceipts

RATE, FEE, HOLD = Decimal("0.013"), Decimal("10"), 21
BUYER = 555


class Stars:
    """The Stars services over one database and one manual clock."""

    def __init__(self, session_factory, *, stars_only=False):
        self.clock = ManualClock()
        self.session_factory = session_factory
        self.jobs = JobQueue(session_factory, clock=self.clock)
        self.checkout = StarsCheckout(session_factory, self.clock, rate=RATE, stars_only=stars_only)
        self.receipts = StarsReceipts(session_factory, self.jobs, self.clock,
                                      fulfilment=Fulfilment(self.jobs, fee_percent=FEE), rate=RATE,
                                      fee_percent=FEE, hold_days=HOLD)
        self.releaser = ShareReleaser(session_factory, self.jobs, self.clock, fee_percent=FEE)
        self.charges = 0

    def channel(self, key="chan01key", price_stars=None):
        with self.session_factory.begin() as session:
            channel = Channel(key=key, owner_user_id=77, open_chat_id=-1001, closed_chat_id=-1002,
                              open_title="News", closed_title="VIP", status=ChannelStatus.ACTIVE,
                              payout_currency="eth", payout_network="eth",
                              payout_address="0x" + "ab" * 20)
            channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30, price_stars=price_stars))
            session.add(channel)
        return key

    def paid(self, invoice, amount=None, *, recurring=False, expires=None, charge_id=None, user=BUYER):
        self.charges += 1
        fields = {"currency": "XTR", "total_amount": amount if amount is not None else invoice.stars,
                  "invoice_payload": invoice.payload if hasattr(invoice, "payload") else invoice,
                  "telegram_payment_charge_id": charge_id or f"stxcharge{self.charges}",
                  "provider_payment_charge_id": ""}
        if expires is not None:
            fields.update(subscription_expiration_date=int(expires.timestamp()), is_recurring=True)
            if not recurring:
                fields["is_first_recurring"] = True
        return self.receipts.record(user, "bob", fields), fields["telegram_payment_charge_id"]

    def count(self, model, *where):
        with self.session_factory() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))

    def row(self, star_payment_id):
        with self.session_factory() as session:
            return session.get(StarPayment, star_payment_id)


@pytest.fixture
def stars(session_factory):
    return Stars(session_factory)


def test_a_purchase_is_recorded_once_and_grants_once(stars):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    assert invoice.stars == 385 and stars.checkout.refusal(invoice.payload, BUYER, "XTR", 385) is None
    first, charge = stars.paid(invoice)
    again, _ = stars.paid(invoice, charge_id=charge)
    assert first.status == StarPaymentStatus.FULFILLED and first.created and not again.created
    row = stars.row(first.star_payment_id)
    assert row.usd_value == Decimal("5.005") and row.share_usd + row.fee_usd == row.usd_value
    assert row.share_usd == Decimal("4.5045") and row.share_status == ShareStatus.HELD
    assert row.release_at == row.received_at + timedelta(days=HOLD)
    assert stars.count(Job, Job.kind == INVITE_JOB) == 1 and stars.count(Payment) == 1
    assert stars.count(Subscription) == 1 and stars.count(Payout) == 0  # held: nothing paid yet


def test_pre_checkout_refuses_what_changed_with_a_reason(stars):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    refusal = stars.checkout.refusal
    assert refusal(invoice.payload, BUYER + 1, "XTR", 385) == texts.UNKNOWN_INVOICE
    assert refusal("not-ours", BUYER, "XTR", 385) == texts.UNKNOWN_INVOICE
    assert refusal(invoice.payload, BUYER, "XTR", 384) == texts.PRICE_CHANGED
    with stars.session_factory.begin() as session:
        session.scalars(select(Tier)).one().price_stars = 400
    assert refusal(invoice.payload, BUYER, "XTR", 385) == texts.PRICE_CHANGED
    with stars.session_factory.begin() as session:
        session.scalars(select(Tier)).one().active = False
    assert refusal(invoice.payload, BUYER, "XTR", 385) == texts.TIER_GONE
    with stars.session_factory.begin() as session:
        session.scalars(select(Channel)).one().status = ChannelStatus.LOST_RIGHTS
    assert refusal(invoice.payload, BUYER, "XTR", 385) == texts.not_selling("News")


@pytest.mark.parametrize("bad", ["unknown_payload", "amount_differs", "other_buyer", "closed"])
def test_a_payment_that_does_not_match_changes_nothing_and_goes_to_review(stars, bad):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    if bad == "closed":
        stars.paid(invoice)
    receipt, _ = {
        "unknown_payload": lambda: stars.paid("3f1e2d3c-0000-4000-8000-000000000000", 385),
        "amount_differs": lambda: stars.paid(invoice, 1),
        "other_buyer": lambda: stars.paid(invoice, user=BUYER + 7),
        "closed": lambda: stars.paid(invoice),
    }[bad]()
    row = stars.row(receipt.star_payment_id)
    assert receipt.status == StarPaymentStatus.REVIEW and row.needs_review and row.share_status is None
    granted = 1 if bad == "closed" else 0
    assert stars.count(Payment) == granted and stars.count(Job, Job.kind == INVITE_JOB) == granted
    assert stars.count(Job, Job.kind == ALERT_JOB) == 1


def test_each_recurring_charge_extends_from_the_current_end(stars):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=True)
    now = stars.clock.now()
    first_end = (now + timedelta(days=30)).replace(microsecond=0)  # Telegram sends whole seconds
    first, charge = stars.paid(invoice, expires=first_end)
    with stars.session_factory() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert subscription.star_renews and subscription.star_charge_id == charge
        assert subscription.expires_at == first_end + RENEWAL_GRACE
    stars.clock.advance(timedelta(days=30))
    renewal, _ = stars.paid(invoice.payload, invoice.stars, recurring=True, expires=first_end + timedelta(days=30))
    assert renewal.status == StarPaymentStatus.FULFILLED
    with stars.session_factory() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert subscription.expires_at == first_end + timedelta(days=30) + RENEWAL_GRACE
        assert subscription.star_charge_id == charge  # still the subscription's first charge
        renewed = session.get(Invoice, stars.row(renewal.star_payment_id).invoice_id)
        assert renewed.renewal_of == invoice.payload and renewed.status == InvoiceStatus.COMPLETED


def test_the_share_is_released_after_the_hold_and_paid_exactly(stars):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    receipt, _ = stars.paid(invoice)
    stars.clock.advance(timedelta(days=HOLD) - timedelta(seconds=1))
    assert stars.releaser.run_once() == 0
    stars.clock.advance(timedelta(seconds=1))
    assert stars.releaser.run_once() == 1 and stars.releaser.run_once() == 0
    with stars.session_factory() as session:
        payout = session.scalars(select(Payout)).one()
        assert payout.amount_usd == Decimal("385") * RATE * Decimal("0.9")
    assert stars.row(receipt.star_payment_id).share_status == ShareStatus.RELEASED


def test_a_refund_inside_the_hold_cancels_the_share_and_ends_access(stars):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    receipt, charge = stars.paid(invoice)
    with stars.session_factory.begin() as session:
        result = apply_refund(session, stars.jobs, charge, stars.clock.now())
    with stars.session_factory.begin() as session:
        again = apply_refund(session, stars.jobs, charge, stars.clock.now())
    assert not again.applied and again.share_cancelled == result.share_cancelled  # once
    assert result.applied and result.share_cancelled == Decimal("4.5045")
    row = stars.row(receipt.star_payment_id)
    assert row.status == StarPaymentStatus.REFUNDED and row.share_status == ShareStatus.CANCELLED
    stars.clock.advance(timedelta(days=HOLD + 1))
    assert stars.releaser.run_once() == 0 and stars.count(Payout) == 0
    with stars.session_factory() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert subscription.expires_at <= stars.clock.now() and not subscription.star_renews
        assert session.scalars(select(Payment)).one().status == PaymentStatus.REFUNDED


def test_a_refund_after_the_release_goes_to_review(stars):
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    receipt, charge = stars.paid(invoice)
    stars.clock.advance(timedelta(days=HOLD))
    stars.releaser.run_once()
    with stars.session_factory.begin() as session:
        result = apply_refund(session, stars.jobs, charge, stars.clock.now())
    assert result.review and result.share_cancelled is None
    assert stars.row(receipt.star_payment_id).share_status == ShareStatus.RELEASED


def test_stars_only_mode_and_owner_choices_decide_what_can_be_invoiced(session_factory):
    strict = Stars(session_factory, stars_only=True)
    strict.channel()
    with session_factory.begin() as session:
        session.scalars(select(Channel)).one().accept_stars = False
    assert strict.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False).stars == 385
    relaxed = Stars(session_factory)
    with pytest.raises(Exception, match="doesn't take Telegram Stars"):
        relaxed.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
