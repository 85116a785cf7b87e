"""Failures: ChangeNOW or the chain failing -> retries with backoff; still failing 24 h on ->
needs_review and a DM to the operators; a short host wallet -> an alert; operators retry and cancel."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.models import Job, JobState, PayoutStatus
from telepay.models.channels import PayoutStrategy
from telepay.services.payouts.operations import PayoutRefused, cancel_payout, report, retry_payout
from telepay.services.payouts.runner import PayoutRunner
from telepay.services.payouts.wallet import HostWallet


@pytest.mark.slow  # a day of retries
def test_changenow_down_for_a_day_sends_the_payout_to_review_with_an_alert(world):
    world.changenow.fail_next("/v2/exchange", status=503, count=10_000)  # quotes, creation, status
    payout = world.payout_of(world.pay(world.channel("btc", "btc"), Decimal("40")))
    world.drain(max_rounds=400, step=timedelta(minutes=10))

    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.NEEDS_REVIEW and payout.resume_status == PayoutStatus.PENDING
    assert world.clock.now() - payout.created_at >= timedelta(hours=24)
    [alert] = world.alerts()
    assert f"Payout {payout.id}" in alert and "needs review" in alert and "503" in alert
    with world.session_factory() as session:  # retried with growing gaps, not every 30 s for a day
        job = session.scalar(select(Job).where(Job.kind == "payout.run"))
        assert job.state == JobState.DONE and 10 < job.attempts < 80

    world.changenow.faults = type(world.changenow.faults)()
    assert retry_payout(world.session_factory, world.jobs, payout.id, world.clock.now()) == PayoutStatus.PENDING
    world.drain()
    assert world.payout(payout.id).status == PayoutStatus.FINISHED


def test_a_short_failure_is_retried_and_the_payout_finishes(world):
    world.changenow.fail_next("/v2/exchange", method="POST", status=500, count=1)  # creation refused
    payout = world.payout_of(world.pay(world.channel("usdt", "eth"), Decimal("40")))
    world.drain()
    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.FINISHED and payout.failing_since is None
    assert world.alerts() == []


def test_a_failed_exchange_goes_to_review_at_once(world):
    payout = world.payout_of(world.pay(world.channel("usdt", "eth"), Decimal("40")))
    assert world.runner.run(payout.id) == PayoutStatus.FUNDED  # funded; the exchange is under way...
    exchange = world.changenow.exchange(world.payout(payout.id).exchange_id)
    exchange.status = "failed"  # ...and let ChangeNOW fail it meanwhile
    world.drain()
    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.NEEDS_REVIEW and "failed" in payout.last_error
    assert any("needs review" in text for text in world.alerts())
    with pytest.raises(PayoutRefused):  # its transfer is signed: it cannot be cancelled
        cancel_payout(world.session_factory, payout.id, world.clock.now(), "test")


def test_a_host_wallet_that_cannot_cover_a_payout_alerts_the_operators(world, chain):
    poor = chain.new_account(eth=Decimal("0.001"))
    wallet = HostWallet(world.w3, poor.key.to_0x_hex(), chain.usdt_address, world.session_factory, world.clock,
                        chain_id=chain.chain_id)
    world.runner = PayoutRunner(world.session_factory, world.jobs, world.exchanges, wallet, world.clock)
    payout = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("100")))
    with pytest.raises(Exception):
        world.runner.run(payout.id)
    assert world.payout(payout.id).status == PayoutStatus.PENDING
    [alert] = world.alerts()
    assert "short of ETH" in alert and wallet.stored(payout.id) is None


def test_low_balance_against_pending_payouts_alerts_once_an_hour(world):
    world.scheduler.low_balance_usd = Decimal("10") ** 9
    world.pay(world.channel("btc", "btc"), Decimal("40"))
    assert world.scheduler.run_once().alerts == ["ETH", "USDT"]
    assert world.scheduler.run_once().alerts == ["ETH", "USDT"]
    alerts = world.alerts()
    assert len(alerts) == 2 and "36.00 USD of payouts not yet funded" in alerts[0]


def test_cancel_before_funding_and_the_batch_shares_are_held_again(world):
    owner = world.channel("btc", "btc", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("20"))
    world.pay(owner, Decimal("50"))
    [batch_id] = world.scheduler.batches()
    cancel_payout(world.session_factory, batch_id, world.clock.now(), "wrong address")
    assert world.payout(batch_id).status == PayoutStatus.CANCELLED
    with world.session_factory() as session:
        [money] = report(session)
    assert money.pending == Decimal("45") and money.cancelled == 0
    [again] = world.scheduler.batches()
    assert again != batch_id


def test_an_unreachable_chain_is_retried_and_the_payout_finishes_once_it_is_back(world, chain):
    from web3 import HTTPProvider, Web3

    from telepay_sandbox.chain import HOST_WALLET_PRIVATE_KEY
    from telepay.services.payouts.runner import PayoutFailed

    payout = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("40")))
    working = world.runner.wallet
    world.runner.wallet = HostWallet(Web3(HTTPProvider("http://127.0.0.1:9/")), HOST_WALLET_PRIVATE_KEY,
                                     chain.usdt_address, world.session_factory, world.clock,
                                     chain_id=chain.chain_id)
    with pytest.raises(PayoutFailed):
        world.runner.run(payout.id)
    failing = world.payout(payout.id)
    assert failing.status == PayoutStatus.PENDING and failing.failing_since is not None
    world.runner.wallet = working
    world.clock.advance(timedelta(hours=3))
    world.drain()
    payout = world.payout(payout.id)
    assert payout.status == PayoutStatus.FINISHED and payout.failing_since is None
    assert len(world.chain_txs(payout.id)) == 1 and world.alerts() == []


def test_a_payout_that_waits_polls_on_its_one_job(world):
    runs = []
    run_job = world.runner.run_job

    def counted(payout_id):
        runs.append(payout_id)
        return run_job(payout_id)

    world.runner.run_job = counted
    payout = world.payout_of(world.pay(world.channel("usdt", "eth"), Decimal("40")))
    world.drain()
    assert world.payout(payout.id).status == PayoutStatus.FINISHED
    assert len(runs) > 1  # it waited for the chain or the exchange at least once...
    with world.session_factory() as session:  # ...and every look was the same job, run again
        jobs = list(session.scalars(select(Job).where(Job.kind == "payout.run")))
    assert len(jobs) == 1 and jobs[0].state == JobState.DONE
