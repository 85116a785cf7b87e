"""Ethereum as on mainnet, on the real EVM (eth-tester/py-evm): stuck transfers replaced with higher
fees (the dev chain holds them in its pool and mines only above a fee floor), at most one of the
versions paying whatever crashes; gas estimated, so a contract wallet is paid; finality after
confirmations; shortfalls found before estimation; too-small direct ETH payouts carried over; and
`telepay run` refusing an RPC on another chain."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.models import ChainTransaction, ChainTxAttempt, PayoutStatus
from telepay.models.channels import PayoutStrategy
from telepay.services.payouts.fees import bumped
from telepay.services.payouts.runner import PayoutFailed, PayoutRunner
from telepay.services.payouts.wallet import ETH, HostWallet
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from tests.services.payouts.conftest import Crash

REPLACEMENT_POINTS = ["after_replacement_signed", "after_replacement_broadcast", "before_receipt_stored"]


@pytest.fixture
def held(chain):
    """The dev chain's pool holds transactions: `mine()` takes only those paying the floor."""
    yield chain
    chain.release()


def _attempts(world, payout_id: int) -> list[ChainTxAttempt]:
    with world.session_factory() as session:
        rows = list(session.scalars(select(ChainTxAttempt).join(ChainTransaction).where(
            ChainTransaction.payout_id == payout_id).order_by(ChainTxAttempt.id)))
        session.expunge_all()
        return rows


def _until_finished(world, payout_id: int, *, rounds: int = 40, every=timedelta(seconds=61)) -> None:
    """Poll the payout as the worker would, a block mined between looks; crashes restart it."""
    for _ in range(rounds):
        try:
            if world.runner.run(payout_id) == PayoutStatus.FINISHED:
                return
        except Crash:
            world.crashes += 1
        world.clock.advance(every)
        world.chain.mine()
    raise AssertionError(f"payout {payout_id} did not finish: {world.payout(payout_id).status}")


def _paid_once(world, channel, payout_id: int, nonce_before: int):
    payout = world.payout(payout_id)
    assert payout.status == PayoutStatus.FINISHED, payout.last_error
    [transfer] = world.host_transfers(channel.payout_address, "eth")  # the chain's word
    assert world.chain.nonce(world.wallet.address) == nonce_before + 1  # one nonce, used once
    [stored] = world.chain_txs(payout_id)
    assert stored.tx_hash == transfer.tx_hash == payout.payout_hash
    assert transfer.tx_hash in {a.tx_hash for a in _attempts(world, payout_id)}
    assert not world.chain.pending()
    return transfer


def _stuck_payout(world, held, floor_bumps: int = 3):
    """A direct ETH payout whose first version waits in the pool below the floor."""
    channel = world.channel("eth", "eth")
    nonce_before = world.chain.nonce(world.wallet.address)
    payout = world.payout_of(world.pay(channel, Decimal("60")))
    base = world.w3.eth.get_block("latest")["baseFeePerGas"]
    first_cap = 2 * base + world.wallet.priority_fee_wei
    floor = first_cap
    for _ in range(floor_bumps):
        floor = bumped(floor)
    held.hold(fee_floor_wei=floor)
    assert world.runner.run(payout.id) == PayoutStatus.FUNDING
    assert len(world.chain.pending()) == 1
    world.chain.mine()
    assert len(world.chain.pending()) == 1  # below the floor: not mined, as behind a risen base fee
    return channel, payout, nonce_before


def test_a_stuck_transfer_is_replaced_until_mined_and_pays_once(world, held):
    channel, payout, nonce_before = _stuck_payout(world, held)
    _until_finished(world, payout.id)
    _paid_once(world, channel, payout.id, nonce_before)
    attempts = _attempts(world, payout.id)
    assert len(attempts) >= 3
    for old, new in zip(attempts, attempts[1:]):  # both caps up by >= 10 % each time (geth's rule)
        assert new.max_fee_per_gas * 10 >= old.max_fee_per_gas * 11
        assert new.max_priority_fee_per_gas * 10 >= old.max_priority_fee_per_gas * 11
        assert new.created_at - old.created_at >= world.wallet.replace_after
    assert len({a.tx_hash for a in attempts}) == len(attempts)


@pytest.mark.parametrize("point", REPLACEMENT_POINTS)
def test_a_crash_at_each_step_of_a_replacement_still_pays_once(world, held, point):
    channel, payout, nonce_before = _stuck_payout(world, held, floor_bumps=2)
    world.crasher.armed.add(point)
    _until_finished(world, payout.id)
    assert point in world.crasher.seen and world.crashes == 1
    _paid_once(world, channel, payout.id, nonce_before)


def test_whichever_version_is_mined_counts(world, held):
    """Crash after a replacement is signed but before it is sent; the old version then gets
    mined. The payout finishes on the old version's hash and the new one is never sent."""
    channel, payout, nonce_before = _stuck_payout(world, held)
    world.crasher.armed.add("after_replacement_signed")
    world.clock.advance(world.wallet.replace_after)
    with pytest.raises(Crash):
        world.runner.run(payout.id)
    first, second = _attempts(world, payout.id)
    held.fee_floor_wei = None  # the base fee falls back: the pool's (old) version is mined
    world.chain.mine()
    _until_finished(world, payout.id)
    transfer = _paid_once(world, channel, payout.id, nonce_before)
    assert transfer.tx_hash == first.tx_hash != second.tx_hash


def test_a_transfer_an_rpc_refuses_for_its_fee_is_replaced_until_accepted(world, held, caplog):
    """Some hosted RPCs refuse a fee cap below the base fee instead of pooling it: nothing is
    pending anywhere, and the stored transfer must still be replaced, not retried as is for ever."""
    channel = world.channel("eth", "eth")
    nonce_before = world.chain.nonce(world.wallet.address)
    payout = world.payout_of(world.pay(channel, Decimal("60")))
    base = world.w3.eth.get_block("latest")["baseFeePerGas"]
    held.hold(fee_floor_wei=bumped(bumped(2 * base + world.wallet.priority_fee_wei)), refuse_below_floor=True)
    assert world.runner.run(payout.id) == PayoutStatus.FUNDING
    assert world.chain.pending() == [] and "refused transfer" in caplog.text
    _until_finished(world, payout.id)
    _paid_once(world, channel, payout.id, nonce_before)
    assert len(_attempts(world, payout.id)) == 3  # refused, refused, accepted


def test_a_transfer_is_final_only_after_the_confirmations(world):
    world.wallet.confirmations = 3
    channel = world.channel("eth", "eth")
    payout = world.payout_of(world.pay(channel, Decimal("60")))
    assert world.runner.run(payout.id) == PayoutStatus.FUNDING
    assert world.host_transfers(channel.payout_address, "eth")  # mined, one block deep
    world.chain.mine()
    assert world.runner.run(payout.id) == PayoutStatus.FUNDING  # two deep: not yet
    world.chain.mine()
    assert world.runner.run(payout.id) == PayoutStatus.FINISHED


def test_a_contract_wallet_is_paid(world, chain):
    wallet = chain.deploy_contract_wallet()
    channel = world.channel("eth", "eth", address=wallet)
    payout = world.payout_of(world.pay(channel, Decimal("60")))
    world.drain()
    assert world.payout(payout.id).status == PayoutStatus.FINISHED, world.payout(payout.id).last_error
    [transfer] = world.host_transfers(wallet, "eth")
    assert world.w3.eth.get_transaction_receipt(transfer.tx_hash)["gasUsed"] > 21_000
    assert world.w3.eth.get_storage_at(wallet, 0) == (1).to_bytes(32, "big")  # its fallback ran


def test_a_usdt_shortfall_raises_the_host_wallet_alert_before_estimating(world, chain):
    poor = chain.new_account(eth=Decimal("1"), usdt=Decimal("5"))
    wallet = HostWallet(world.w3, poor.key.to_0x_hex(), chain.usdt_address, world.session_factory, world.clock,
                        chain_id=chain.chain_id)
    world.runner = PayoutRunner(world.session_factory, world.jobs, world.exchanges, wallet, world.clock)
    world.scheduler.wallet = wallet
    channel = world.channel("usdt", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("40"))
    payment_id = world.pay(channel, Decimal("60"))
    world.scheduler.batches()
    payout = world.payout_of(payment_id)
    with pytest.raises(PayoutFailed) as failed:
        world.runner.run(payout.id)
    assert "InsufficientFunds" in str(failed.value) and "revert" not in str(failed.value).lower()
    [alert] = world.alerts()
    assert "short of USDT" in alert and f"payout {payout.id}" in alert
    assert wallet.stored(payout.id) is None and world.payout(payout.id).status == PayoutStatus.PENDING


def test_a_direct_eth_payout_below_the_gas_minimum_is_carried_over_then_paid_with_the_next(world):
    channel = world.channel("eth", "eth")
    small_units = int(world.exchanges.eth_worth(Decimal("0.9")).scaleb(18))
    fee = world.wallet.transfer_fee(ETH, channel.payout_address, small_units)
    # A multiple that puts a $1 sale's share (0.9 USD) at half the minimum; eleven times it clears it.
    world.runner.eth_min_fee_multiple = Decimal(2 * small_units) / fee
    small = world.payout_of(world.pay(channel, Decimal("1")))
    world.drain()
    small = world.payout(small.id)
    assert small.status == PayoutStatus.CARRIED_OVER and "network fee" in small.last_error
    assert world.chain_txs(small.id) == [] and not world.host_transfers(channel.payout_address, "eth")
    big = world.payout_of(world.pay(channel, Decimal("10")))
    world.drain()
    big = world.payout(big.id)
    assert big.status == PayoutStatus.FINISHED and big.amount_usd == Decimal("9.9")
    assert world.payout(small.id).status == PayoutStatus.MERGED
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1


def test_run_refuses_an_rpc_on_another_chain(chain, database_url, tmp_path):
    env = sandbox_env(telegram_base_url="http://127.0.0.1:9/bot", token="111:chain-test", bot_username="b",
                      data_dir=tmp_path, database_url=database_url, chain_env={**chain.env(), "ETH_CHAIN_ID": "1"})
    result = TelepayProcess(env, tmp_path / "log").telepay("run", timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"serves chain {chain.chain_id}, but ETH_CHAIN_ID is 1" in result.stderr
    assert "Traceback" not in result.stderr
