"""Conservation over a randomized run: 200 payments, mixed payout currencies and strategies,
ChangeNOW failures and crashes at random steps. At the end, for every channel and in total:
owners' payouts + platform fees + carried over + pending == what arrived, to the last unit,
every payout is the sum of the shares traced to it, and the chain agrees with the database."""

from __future__ import annotations

import pytest

import random
from collections import Counter
from decimal import Decimal

from sqlalchemy import func, select

from telepay.clients.changenow import ProviderFailure
from telepay.models import ChainTransaction, ChainTxStatus, Payment, Payout, PayoutKind, PayoutStatus
from telepay.models.channels import PayoutStrategy
from telepay.services.payouts.operations import report
from tests.services.payouts.conftest import Crash

POINTS = ["after_sign", "after_broadcast", "before_receipt_stored", "after_exchange_created", "mid_batch"]
OWNERS = [
    ("eth", "eth", PayoutStrategy.INSTANT, None),
    ("eth", "eth", PayoutStrategy.INSTANT, None),
    ("usdt", "eth", PayoutStrategy.INSTANT, None),
    ("btc", "btc", PayoutStrategy.INSTANT, None),
    ("usdt", "eth", PayoutStrategy.THRESHOLD, Decimal("50")),
    ("usdt", "eth", PayoutStrategy.THRESHOLD, Decimal("120")),
    ("eth", "eth", PayoutStrategy.THRESHOLD, Decimal("80")),
    ("usdt", "trx", PayoutStrategy.THRESHOLD, Decimal("200")),
    ("ltc", "ltc", PayoutStrategy.THRESHOLD, Decimal("20")),
]


@pytest.mark.slow  # two hundred payments through the chain
def test_two_hundred_payments_conserve_every_unit(world):
    rng = random.Random(20261122)
    channels = [world.channel(c, n, strategy=s, threshold=t) for c, n, s, t in OWNERS]
    arrived_total = Decimal(0)
    for number in range(190):
        channel = rng.choice(channels)
        price = Decimal(rng.choice(["4.99", "7.50", "9.99", "15", "25", "49.99", "120"]))
        # What arrived: a little under or over the price at 8 places, or not given (0) at times.
        arrived = Decimal(0) if rng.random() < 0.1 else \
            (price * Decimal(rng.uniform(0.97, 1.05))).quantize(Decimal("1e-8"))
        world.pay(channel, price, arrived=arrived)
        arrived_total += arrived or price
        if rng.random() < 0.08:
            world.crasher.armed.add(rng.choice(POINTS))
        if rng.random() < 0.05:
            world.changenow.fail_next("/v2/exchange", status=503, count=rng.randint(1, 6))
        if number % 20 == 19:
            try:
                world.scheduler.run_once()
            except Crash:
                world.crashes += 1
            except ProviderFailure:
                pass  # a failed tick: the next one does the same work
            world.drain(max_rounds=400)
    world.crasher.armed.clear()
    world.changenow.faults = type(world.changenow.faults)()
    world.scheduler.run_once()
    world.drain(max_rounds=400)
    for _ in range(10):  # the last shares stay held: pending at the end
        channel = rng.choice([c for c in channels if c.payout_strategy == PayoutStrategy.THRESHOLD])
        world.pay(channel, Decimal("4.99"))
        arrived_total += Decimal("4.99")

    with world.session_factory() as session:
        money = report(session)
        total = sum((m.paid_out + m.fees + m.carried_over + m.pending + m.cancelled for m in money), Decimal(0))
        assert sum((m.received for m in money), Decimal(0)) == total == arrived_total
        assert sum(m.payments for m in money) == 200
        assert session.scalar(select(func.count()).where(Payment.owner_share_usd.is_(None))) == 0

        # Every owner payout is exactly the shares traced to it.
        shares = dict(session.execute(select(Payment.payout_id, func.sum(Payment.owner_share_usd))
                                      .where(Payment.payout_id.is_not(None)).group_by(Payment.payout_id)).all())
        payouts = list(session.scalars(select(Payout)))
        for payout in payouts:
            if payout.kind != PayoutKind.SWEEP and payout.status != PayoutStatus.MERGED:
                assert payout.amount_usd == shares.get(payout.id, 0), payout.id
        statuses = Counter(p.status.value for p in payouts)
        assert not set(statuses) - {"finished", "carried_over", "merged"}, statuses
        assert sum(m.pending for m in money) > 0 and statuses["finished"] > 50

        # The chain agrees: one transfer per funded payout, and USDT sent == USD paid, in base units.
        txs = list(session.scalars(select(ChainTransaction)))
        assert all(tx.status == ChainTxStatus.CONFIRMED for tx in txs)
        assert len({tx.payout_id for tx in txs}) == len(txs)
        by_payout = {p.id: p for p in payouts}
        for channel in channels:
            if (channel.payout_currency, channel.payout_network) != ("usdt", "eth") or \
                    channel.payout_strategy != PayoutStrategy.THRESHOLD:
                continue
            on_chain = sum(int(t.amount * 10**6) for t in world.host_transfers(channel.payout_address, "usdt"))
            paid = next(m.paid_out for m in money if m.channel_id == channel.id)
            assert on_chain == int(paid * 10**6)
        for tx in txs:
            landed = [t for t in world.chain.transfers_to(tx.to_address, tx.asset.lower()) if t.tx_hash == tx.tx_hash]
            assert len(landed) == 1
            unit = 10**18 if tx.asset == "ETH" else 10**6
            assert int(landed[0].amount * unit) == int(tx.amount_base_units)
            assert by_payout[tx.payout_id].status == PayoutStatus.FINISHED
    assert world.crashes > 3
