"""Conservation for Stars over randomized runs: purchases at random prices on instant and
threshold channels, refunds inside and after the hold, the clock moving, releases. At the end,
exactly: received (Stars x rate) = fees + released + held + refunded + under review; every
released share is the payment's allocated share, traced to a payout or a held batch share."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.models import (
    Accumulation, Channel, Payment, PayoutStrategy, ShareStatus, StarPayment, StarPaymentStatus, Tier,
)
from telepay.services.stars.holds import apply_refund
from telepay.services.stars.report import stars_report
from tests.services.stars.test_receipts import BUYER, HOLD, RATE, Stars


def _channels(stars: Stars) -> list[str]:
    keys = []
    for n, strategy in enumerate((PayoutStrategy.INSTANT, PayoutStrategy.THRESHOLD, PayoutStrategy.INSTANT)):
        key = stars.channel(key=f"chan{n}key")
        with stars.session_factory.begin() as session:
            channel = session.scalars(select(Channel).where(Channel.key == key)).one()
            channel.open_chat_id, channel.closed_chat_id = -2000 - 2 * n, -2001 - 2 * n
            channel.payout_strategy = strategy
            channel.payout_threshold_usd = Decimal("20") if strategy == PayoutStrategy.THRESHOLD else None
        keys.append(key)
    return keys


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_star_is_accounted_for_exactly(session_factory, seed):
    rng = random.Random(seed)
    stars = Stars(session_factory)
    keys = _channels(stars)
    charges: list[str] = []
    for _ in range(60):
        roll = rng.random()
        if roll < 0.55:
            key = rng.choice(keys)
            with stars.session_factory.begin() as session:
                tier = session.scalars(select(Tier).join(Channel).where(Channel.key == key)).one()
                tier.price_stars = rng.randint(1, 10000)
            buyer = BUYER + rng.randint(0, 5)
            invoice = stars.checkout.open_tier(buyer, None, key, 1, subscription=False)
            amount = invoice.stars if rng.random() > 0.1 else invoice.stars - 1 or 2  # now and then a bad one
            receipt, charge = stars.paid(invoice, amount, user=buyer)
            charges.append(charge)
            if rng.random() < 0.05:
                stars.paid(invoice, amount, user=buyer, charge_id=charge)  # a repeated update
        elif roll < 0.7 and charges:
            with stars.session_factory.begin() as session:
                apply_refund(session, stars.jobs, rng.choice(charges), stars.clock.now())
        elif roll < 0.85:
            stars.clock.advance(timedelta(days=rng.randint(1, 15)))
        else:
            stars.releaser.run_once()
    stars.clock.advance(timedelta(days=rng.choice([0, HOLD])))
    stars.releaser.run_once()

    with session_factory() as session:
        money = stars_report(session)
        rows = list(session.scalars(select(StarPayment)))
        assert money.received == sum(Decimal(row.stars) for row in rows) * RATE
        assert money.balanced(), money
        assert money.payments == len(charges)
        for row in rows:
            if row.share_status != ShareStatus.RELEASED:
                continue
            payment = session.get(Payment, row.payment_id)
            assert (payment.owner_share_usd, payment.platform_fee_usd) == (row.share_usd, row.fee_usd)
            assert row.share_usd + row.fee_usd == row.usd_value
            held = session.scalar(select(Accumulation).where(Accumulation.payment_id == payment.id))
            assert payment.payout_id is not None or held is not None
        for row in rows:
            if row.status == StarPaymentStatus.REVIEW:
                assert row.payment_id is None and row.share_status is None
