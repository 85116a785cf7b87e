"""Payouts through the real `telepay run` process: its worker runs the payout jobs and its timer
the threshold batches, against the ChangeNOW sandbox and the dev chain over loopback. Then the
process is killed in the middle of a payout and started again: the payout completes, once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text, update

from telepay.clock import ManualClock
from telepay.models import Job, JobState, PayoutStatus
from telepay.models.channels import PayoutStrategy
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay_sandbox.waiting import until
from tests.services.payouts.conftest import World

TOKEN = "333:payout-e2e"
WAIT = 40.0  # a payout crosses ChangeNOW's and the chain's clocks: longer than a message


@pytest.fixture
def running(database_url, session_factory, tmp_path):
    with DevChain() as chain, TelegramSandbox(token=TOKEN, bot_username="PayoutE2EBot",
                                              rate_limits=RateLimits.off()) as telegram, \
            ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None, step_seconds=0.5) as changenow:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="PayoutE2EBot",
                          data_dir=tmp_path, database_url=database_url, changenow_base_url=changenow.base_url,
                          chain_env=chain.env(),
                          extra={"PAYOUT_POLL_SECONDS": "0.3", "PAYOUT_BATCH_INTERVAL_SECONDS": "1",
                                 "WORKER_POLL_SECONDS": "0.2"})
        process = TelepayProcess(env, tmp_path / "telepay.log")
        world = World(session_factory, chain, changenow, ManualClock())
        world.changenow.add_api_key("cn-payouts-key")
        process.start()
        try:
            yield world, process
        finally:
            process.kill()
            world.client.close()


def _status(world, payout_id: int) -> PayoutStatus:
    return world.payout(payout_id).status


def test_instant_and_threshold_payouts_complete_in_the_running_process(running):
    world, process = running
    instant = world.channel("usdt", "eth")
    batched = world.channel("usdt", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("30"))
    payout = world.payout_of(world.pay(instant, Decimal("50")))
    world.pay(batched, Decimal("20"))
    world.pay(batched, Decimal("20"))

    until(lambda: _status(world, payout.id) == PayoutStatus.FINISHED, "the instant payout", timeout=WAIT)
    payout = world.payout(payout.id)
    assert world.chain.balance_usdt(instant.payout_address) == payout.to_amount > 0

    batch = until(lambda: next((p for p in world.payouts() if p.kind.value == "batch"
                                 and p.status == PayoutStatus.FINISHED), None), "the batch payout", timeout=WAIT)
    assert batch.amount_usd == Decimal("36")
    assert [t.amount for t in world.host_transfers(batched.payout_address, "usdt")] == [Decimal("36")]
    until(lambda: any(p.kind.value == "sweep" and p.status == PayoutStatus.FINISHED for p in world.payouts()),
           "the sweep", timeout=WAIT)
    code, _ = process.stop()
    assert code == 0 and "Traceback" not in process.log()
    assert "HOST_WALLET" not in process.log() and "0x095ce85e" not in process.log()  # no key in the log


def test_killed_mid_payout_then_restarted_pays_once(running, database_url):
    world, process = running
    owner = world.channel("usdt", "eth")
    payout = world.payout_of(world.pay(owner, Decimal("80")))
    until(lambda: world.chain_txs(payout.id), "the funding transfer stored", timeout=WAIT)
    process.kill()  # SIGKILL: no clean-up at all
    assert _status(world, payout.id) != PayoutStatus.FINISHED  # the exchange takes seconds: it was mid-way
    # The dead worker's lease would run out in 5 minutes; let it have run out.
    with world.session_factory.begin() as session:
        session.execute(update(Job).where(Job.state == JobState.RUNNING).values(locked_until=text("now()")))
    process.start()
    until(lambda: _status(world, payout.id) == PayoutStatus.FINISHED, "the payout after the restart", timeout=WAIT)
    payout = world.payout(payout.id)
    assert len(world.host_transfers(payout.payin_address, "eth")) == 1
    assert len(world.chain.transfers_to(owner.payout_address, "usdt")) == 1
    assert len(world.chain_txs(payout.id)) == 1
