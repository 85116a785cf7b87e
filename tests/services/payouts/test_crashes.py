"""Exactly once: a crash at every step of a payout, then a restart -> it completes, and the chain
shows exactly one transfer for it. Checked on the chain, not only in the database."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.clients.changenow import ChangeNowClient
from telepay.models import Accumulation, ChainTransaction, PayoutStatus
from telepay.models.channels import PayoutStrategy
from tests.services.payouts.conftest import KEY, Crash

WALLET_POINTS = ["after_sign", "after_broadcast", "before_receipt_stored"]
EXCHANGE_POINTS = ["after_exchange_created", *WALLET_POINTS]

# (owner currency, network, strategy): what the host pays with and whether an exchange is involved.
PATHS = {
    "instant-exchange": ("usdt", "eth", PayoutStrategy.INSTANT, EXCHANGE_POINTS),
    "instant-direct-eth": ("eth", "eth", PayoutStrategy.INSTANT, WALLET_POINTS),
    "batch-exchange": ("eth", "eth", PayoutStrategy.THRESHOLD, ["mid_batch", *EXCHANGE_POINTS]),
    "batch-direct-usdt": ("usdt", "eth", PayoutStrategy.THRESHOLD, ["mid_batch", *WALLET_POINTS]),
}
CASES = [(path, point) for path, (*_, points) in PATHS.items() for point in points]


def _start(world, path: str) -> tuple:
    currency, network, strategy, _ = PATHS[path]
    channel = world.channel(currency, network, strategy=strategy,
                            threshold=Decimal("40") if strategy == PayoutStrategy.THRESHOLD else None)
    payment_id = world.pay(channel, Decimal("60"))
    return channel, payment_id


def _payout_for(world, channel, payment_id):
    if channel.payout_strategy == PayoutStrategy.INSTANT:
        return world.payout_of(payment_id)
    for _ in range(3):  # a crash mid-batch leaves nothing; the next tick makes the batch
        try:
            world.scheduler.batches()
        except Crash:
            world.crashes += 1
            with world.session_factory() as session:
                assert session.scalar(select(Accumulation.payout_id)) is None  # rolled back whole
            continue
        break
    return world.payout_of(payment_id)


def _assert_paid_once(world, channel, payout):
    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.FINISHED, payout.last_error
    funded_to = payout.payin_address or channel.payout_address
    asset = payout.funding_asset.lower()
    assert len(world.host_transfers(funded_to, asset)) == 1
    assert len(world.chain_txs(payout.id)) == 1
    if payout.exchange_id:
        exchanges = [e for e in world.changenow.exchanges.values() if e.user_id == f"telepay-payout-{payout.id}"]
        assert len(exchanges) == 1 and exchanges[0].status == "finished"
        # the owner got the exchange's payout once (ETH or USDT on the dev chain)
        assert len(world.chain.transfers_to(channel.payout_address, payout.to_currency)) == 1


@pytest.mark.parametrize("path,point", CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_a_crash_at_each_step_then_a_restart_pays_once(world, path, point):
    world.crasher.armed.add(point)
    channel, payment_id = _start(world, path)
    payout = _payout_for(world, channel, payment_id)
    world.drain()
    assert point in world.crasher.seen and world.crashes == 1
    _assert_paid_once(world, channel, payout)


@pytest.mark.parametrize("path", list(PATHS))
def test_a_crash_at_every_step_of_one_payout(world, path):
    world.crasher.armed.update(PATHS[path][3])
    channel, payment_id = _start(world, path)
    payout = _payout_for(world, channel, payment_id)
    world.drain()
    assert world.crashes == len(PATHS[path][3])
    _assert_paid_once(world, channel, payout)


def test_an_exchange_whose_answer_was_lost_is_found_not_created_again(world):
    world.runner.exchanges.client = ChangeNowClient(world.changenow.base_url, KEY, timeout=0.3, retries=0)
    world.changenow.fail_next("/v2/exchange", method="POST", delay=1.0)  # created, answer held back
    channel, payment_id = _start(world, "instant-exchange")
    world.drain()
    payout = world.payout_of(payment_id)
    _assert_paid_once(world, channel, payout)
    creations = [c for c in world.changenow.calls if c.method == "POST" and c.path == "/v2/exchange"]
    assert len(creations) == 1


def test_concurrent_workers_on_the_same_payouts_send_one_transfer_each(world):
    channels = [world.channel("eth", "eth") for _ in range(3)] + [world.channel("usdt", "eth")]
    payouts = [world.payout_of(world.pay(channel, Decimal("40"))) for channel in channels]
    barrier = threading.Barrier(12)
    errors = []

    def worker(payout_id):
        barrier.wait()
        try:
            for _ in range(3):
                world.runner.run(payout_id)
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(p.id,)) for p in payouts for _ in range(3)]
    threads = threads[:12]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    world.drain()
    for channel, payout in zip(channels, payouts):
        _assert_paid_once(world, channel, payout)
    with world.session_factory() as session:
        nonces = list(session.scalars(select(ChainTransaction.nonce)))
    assert len(nonces) == len(set(nonces)) == len(payouts)


def test_an_exchange_created_for_a_payout_cancelled_meanwhile_is_left_unfunded_and_reported(world):
    from telepay.services.payouts.operations import cancel_payout

    channel, payment_id = _start(world, "instant-exchange")
    payout = world.payout_of(payment_id)
    world.crasher.armed.add("after_exchange_created")
    with pytest.raises(Crash):
        world.runner.run(payout.id)
    cancel_payout(world.session_factory, payout.id, world.clock.now(), "owner changed address")
    assert world.runner.run(payout.id) == PayoutStatus.CANCELLED  # nothing runs a cancelled payout
    # Had the creation and the cancel crossed, the runner would find it and report it:
    world.runner._record_exchange(world.payout(payout.id), "late-exchange", None, None, None)
    assert any("left unfunded" in text for text in world.alerts())
    [exchange] = world.changenow.exchanges.values()
    assert exchange.status in ("new", "waiting") and not world.chain.transfers_to(exchange.payin_address)
    assert world.chain_txs(payout.id) == []
