"""Threshold payouts: shares held in USD and swept into host USDT, one batch per owner at the
threshold; and shares below ChangeNOW's minimum carried over, never lost."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from telepay.models import PayoutKind, PayoutStatus
from telepay.models.channels import PayoutStrategy
from telepay.services.payouts.operations import report


def _usdt_from_changenow_to_host(world) -> list:
    return [t for t in world.chain.transfers_to(world.wallet.address, "usdt")
            if t.from_address == world.changenow.hot_wallet.address]


def test_shares_are_swept_into_usdt_then_paid_in_one_batch_at_the_threshold(world):
    usdt_owner = world.channel("usdt", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("50"))
    eth_owner = world.channel("eth", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("100"))
    swept_before = len(_usdt_from_changenow_to_host(world))
    world.pay(usdt_owner, Decimal("20"))
    world.pay(usdt_owner, Decimal("20"))
    world.pay(eth_owner, Decimal("25"))

    tick = world.scheduler.run_once()
    assert tick.batch_ids == []  # 36 USD held of 50; 22.5 of 100
    assert tick.sweep_id is not None
    world.drain()
    sweep = world.payout(tick.sweep_id)
    assert sweep.kind == PayoutKind.SWEEP and sweep.status == PayoutStatus.FINISHED, sweep.last_error
    # The host's USDT grew by exactly the locked shares: ChangeNOW's fees were paid in ETH.
    swept = _usdt_from_changenow_to_host(world)[swept_before:]
    assert [t.amount for t in swept] == [Decimal("58.5")] == [sweep.amount_usd]

    world.pay(usdt_owner, Decimal("30"))  # held 63 >= 50
    tick = world.scheduler.run_once()
    [batch_id] = tick.batch_ids
    world.drain()
    batch = world.payout(batch_id)
    assert batch.status == PayoutStatus.FINISHED and batch.amount_usd == Decimal("63")
    assert [t.amount for t in world.host_transfers(usdt_owner.payout_address, "usdt")] == [Decimal("63")]
    assert world.payout(tick.sweep_id).status == PayoutStatus.FINISHED  # the new share was swept too

    # Nothing more for the USDT owner until new money comes; the ETH owner is still below 100.
    assert world.scheduler.run_once().batch_ids == []
    with world.session_factory() as session:
        money = {m.channel_id: m for m in report(session)}
    assert money[usdt_owner.id].paid_out == Decimal("63") and money[usdt_owner.id].fees == Decimal("7")
    assert money[eth_owner.id].pending == Decimal("22.5")


def test_a_batch_in_another_currency_goes_through_an_exchange_funded_in_usdt(world):
    owner = world.channel("usdt", "trx", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("20"))
    world.pay(owner, Decimal("40"))
    [batch_id] = world.scheduler.run_once().batch_ids
    world.drain()
    batch = world.payout(batch_id)
    assert batch.status == PayoutStatus.FINISHED, batch.last_error
    exchange = world.changenow.exchange(batch.exchange_id)
    assert (exchange.src.ticker, exchange.dst.network) == ("usdt", "trx")
    assert [t.amount for t in world.host_transfers(batch.payin_address, "usdt")] == [Decimal("36")]


def test_an_instant_share_below_the_minimum_is_carried_into_the_next_payout(world):
    owner = world.channel("btc", "btc")
    first = world.pay(owner, Decimal("8"))  # share 7.20 USD: below ChangeNOW's 10 USD
    world.drain()
    carried = world.payout_of(first)
    assert carried.status == PayoutStatus.CARRIED_OVER and "minimum" in carried.last_error
    with world.session_factory() as session:
        assert report(session)[0].carried_over == Decimal("7.2")

    second = world.pay(owner, Decimal("8"))
    world.drain()
    payout = world.payout_of(second)
    assert world.payout_of(first).id == payout.id  # both payments now trace to the new payout
    assert payout.status == PayoutStatus.FINISHED and payout.amount_usd == Decimal("14.4")
    assert world.payout(carried.id).status == PayoutStatus.MERGED
    assert world.payout(carried.id).merged_into_id == payout.id


def test_a_batch_below_the_minimum_is_carried_into_the_next_batch(world):
    world.changenow.market = dataclasses.replace(world.changenow.market, min_usd=Decimal("100"))
    owner = world.channel("btc", "btc", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("20"))
    first = world.pay(owner, Decimal("60"))
    [batch_id] = world.scheduler.batches()
    world.drain()
    assert world.payout(batch_id).status == PayoutStatus.CARRIED_OVER
    assert world.scheduler.batches() == []  # no new money: nothing new to try
    world.changenow.market = dataclasses.replace(world.changenow.market, min_usd=Decimal("10"))
    world.pay(owner, Decimal("10"))
    [second_id] = world.scheduler.batches()
    world.drain()
    second = world.payout(second_id)
    assert second.status == PayoutStatus.FINISHED and second.amount_usd == Decimal("63")
    assert world.payout_of(first).id == second_id


def test_an_owner_who_switches_to_instant_gets_what_was_held(world):
    from sqlalchemy import update

    from telepay.models import Channel

    owner = world.channel("usdt", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("500"))
    world.pay(owner, Decimal("30"))
    assert world.scheduler.batches() == []
    with world.session_factory.begin() as session:
        session.execute(update(Channel).where(Channel.id == owner.id).values(payout_strategy=PayoutStrategy.INSTANT))
    [batch_id] = world.scheduler.batches()
    world.drain()
    assert world.payout(batch_id).status == PayoutStatus.FINISHED
    assert [t.amount for t in world.host_transfers(owner.payout_address, "usdt")] == [Decimal("27")]
