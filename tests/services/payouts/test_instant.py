"""Instant payouts end to end: ChangeNOW sandbox over loopback, dev chain over JSON-RPC."""

from __future__ import annotations

from decimal import Decimal

from telepay.models import ChainTxStatus, PayoutStatus
from telepay.services.payouts import split


def test_split_rounds_the_share_down_and_the_fee_takes_the_rest():
    assert split(Decimal("10"), Decimal("10")) == (Decimal("9.000000"), Decimal("1.000000"))
    share, fee = split(Decimal("12.34567891"), Decimal("10"))
    assert share == Decimal("11.111111") and share + fee == Decimal("12.34567891")
    assert split(Decimal("0.0000009"), Decimal("10")) == (Decimal("0"), Decimal("0.0000009"))


def test_eth_to_usdt_through_an_exchange_credits_the_owner_on_chain(world):
    channel = world.channel("usdt", "eth")
    payment_id = world.pay(channel, Decimal("50.00"))
    payout = world.payout_of(payment_id)
    assert payout.amount_usd == Decimal("45.000000") and payout.status == PayoutStatus.PENDING

    world.drain()

    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.FINISHED, payout.last_error
    exchange = world.changenow.exchange(payout.exchange_id)
    assert exchange.status == "finished" and exchange.user_id == f"telepay-payout-{payout.id}"
    # The host funded the pay-in address once, with exactly the quoted ETH...
    funding = world.host_transfers(payout.payin_address, "eth")
    assert [t.amount for t in funding] == [payout.from_amount]
    # ...and the owner's address holds what the exchange promised.
    credited = world.chain.transfers_to(channel.payout_address, "usdt")
    assert [t.amount for t in credited] == [exchange.expected_to] == [payout.to_amount]
    assert world.chain.balance_usdt(channel.payout_address) == payout.to_amount
    assert payout.payout_hash == credited[0].tx_hash
    [tx] = world.chain_txs(payout.id)
    assert tx.status == ChainTxStatus.CONFIRMED and int(tx.amount_base_units) == int(payout.from_amount * 10**18)


def test_eth_to_bitcoin_finishes_the_exchange(world):
    channel = world.channel("btc", "btc")
    payout = world.payout_of(world.pay(channel, Decimal("120")))
    world.drain()
    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.FINISHED, payout.last_error
    assert world.changenow.exchange(payout.exchange_id).payout_address == channel.payout_address
    assert payout.to_amount > 0 and payout.payout_hash


def test_an_owner_taking_eth_is_paid_directly(world):
    channel = world.channel("eth", "eth")
    payout = world.payout_of(world.pay(channel, Decimal("30")))
    world.drain()
    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.FINISHED and payout.exchange_id is None
    [transfer] = world.host_transfers(channel.payout_address, "eth")
    assert transfer.amount == payout.from_amount == payout.to_amount
    price = world.exchanges.eth_price_usd()
    assert abs(transfer.amount * price - Decimal("27")) < Decimal("0.0001")  # the share's worth in ETH
    assert not any(call.path == "/v2/exchange" and call.method == "POST" for call in world.changenow.calls)


def test_allocation_is_idempotent_per_payment(world):
    from telepay.services.payouts import allocate_share
    from tests.services.payouts.conftest import FEE

    channel = world.channel("eth", "eth")
    payment_id = world.pay(channel, Decimal("25"))
    with world.session_factory.begin() as session:
        again = allocate_share(session, world.jobs, payment_id, fee_percent=FEE, now=world.clock.now())
    assert not again.created and again.payout_id == world.payout_of(payment_id).id
    assert len(world.payouts()) == 1


def test_ten_concurrent_allocations_of_one_payment_make_one_payout_and_one_transfer(world):
    import threading

    from telepay.services.payouts import allocate_share
    from tests.services.payouts.conftest import FEE

    channel = world.channel("eth", "eth")
    payment_id = world.pay(channel, Decimal("40"), allocate=False)
    barrier, results = threading.Barrier(10), []

    def allocate():
        barrier.wait()
        with world.session_factory.begin() as session:
            results.append(allocate_share(session, world.jobs, payment_id, fee_percent=FEE, now=world.clock.now()))

    threads = [threading.Thread(target=allocate) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 10 and sum(r.created for r in results) == 1
    assert len({r.payout_id for r in results}) == 1
    world.drain()
    assert len(world.payouts()) == 1
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1
