"""Delivery before money (issue 13, findings 1 and 2) at the payout runner: a subscription's share
is not paid out until its access was delivered, nor to an owner Telegram no longer lists as admin."""

from __future__ import annotations

import uuid
from decimal import Decimal

from telepay.models import (
    Channel, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus, PayoutStatus, Tier,
)
from telepay.services.delivery import mark_delivered
from telepay.services.payouts import allocate_share
from telepay.services.rights import owner_changed
from tests.services.payouts.conftest import FEE


def _sale(world, channel, usd: Decimal) -> tuple[str, int]:
    """A finished subscription payment, allocated as fulfilment does: (invoice id, payment id)."""
    with world.session_factory.begin() as session:
        tier = Tier(channel_id=channel.id, number=1, price_usd=usd, days=30)
        session.add(tier)
        session.flush()
        invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id, tier_id=tier.id,
                          buyer_user_id=777, price_usd=usd, days=30, status=InvoiceStatus.COMPLETED)
        session.add(invoice)
        session.flush()
        payment = Payment(provider_payment_id=f"np-{uuid.uuid4().hex[:8]}", invoice_id=invoice.id,
                          status=PaymentStatus.FINISHED, pay_currency="eth", price_amount=usd, actually_paid_usd=usd)
        session.add(payment)
        session.flush()
        allocate_share(session, world.jobs, payment.id, fee_percent=FEE, now=world.clock.now())
        return invoice.id, payment.id


def test_finding_1_a_subscription_share_waits_for_its_delivery(world):
    channel = world.channel("eth", "eth")
    invoice_id, payment_id = _sale(world, channel, Decimal("50.00"))
    payout = world.payout_of(payment_id)
    assert payout.status == PayoutStatus.PENDING
    assert world.open_jobs() == []  # nothing started it

    # Even run by hand (an operator's retry), the runner holds it and moves no money.
    assert world.runner.run(payout.id) == PayoutStatus.PENDING
    assert world.chain.transfers_to(channel.payout_address, "eth") == []

    with world.session_factory.begin() as session:
        assert mark_delivered(session, world.jobs, invoice_id, world.clock.now())
        assert not mark_delivered(session, world.jobs, invoice_id, world.clock.now())  # once
    assert len(world.open_jobs()) == 1
    world.drain()
    assert world.payout(payout.id).status == PayoutStatus.FINISHED
    assert len(world.chain.transfers_to(channel.payout_address, "eth")) == 1


def test_finding_2_payouts_to_an_owner_no_longer_admin_are_held_until_they_are_back(world):
    channel = world.channel("eth", "eth")
    with world.session_factory.begin() as session:
        owner_changed(session, world.jobs, channel.id, channel.owner_user_id, False, world.clock.now())
    payment_id = world.pay(channel, Decimal("40.00"))  # a donation: delivered by nature
    payout = world.payout_of(payment_id)
    assert world.runner.run(payout.id) == PayoutStatus.PENDING
    assert world.chain.transfers_to(channel.payout_address, "eth") == []
    assert any("no longer an admin" in text for text in world.alerts())

    with world.session_factory.begin() as session:
        owner_changed(session, world.jobs, channel.id, channel.owner_user_id, True, world.clock.now())
        assert session.get(Channel, channel.id).owner_lost_at is None
    world.drain()
    assert world.payout(payout.id).status == PayoutStatus.FINISHED
