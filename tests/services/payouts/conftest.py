"""A payout world: real PostgreSQL, the dev chain over loopback JSON-RPC, the ChangeNOW sandbox
over loopback HTTP, a manual clock, and a synchronous stand-in for the worker that runs the
durable `payout.run` jobs through the real queue (claim, complete, fail, leases)."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from web3 import HTTPProvider, Web3

from telepay.clients.changenow import ChangeNowClient
from telepay.clock import ManualClock
from telepay.models import (
    ChainTransaction, Channel, ChannelStatus, Invoice, InvoiceKind, InvoiceStatus, Job, JobState, Payment,
    PaymentStatus, Payout,
)
from telepay.models.channels import PayoutStrategy
from telepay_sandbox.chain import HOST_WALLET_PRIVATE_KEY, DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay.services.jobs import JobQueue, JobRegistry
from telepay.services.payouts import engine as payout_engine
from telepay.services.payouts import PAYOUT_JOB, allocate_share
from telepay.services.messages import ALERT_JOB
from telepay.services.payouts.batches import PayoutScheduler
from telepay.services.payouts.exchanges import PayoutExchanges
from telepay.services.payouts.runner import PayoutFailed, PayoutRunner
from telepay.services.payouts.wallet import HostWallet

KEY = "cn-payouts-key"
FEE = Decimal("10")
_ids = itertools.count(1)


class Crash(BaseException):
    """A process dying at a checkpoint: nothing below it catches a BaseException."""


class Crasher:
    """Checkpoint hook: armed with a name, the next checkpoint of that name 'kills the process'."""

    def __init__(self) -> None:
        self.armed: set[str] = set()
        self.seen: list[str] = []

    def __call__(self, name: str) -> None:
        self.seen.append(name)
        if name in self.armed:
            self.armed.discard(name)
            raise Crash(name)


@pytest.fixture(scope="session")
def chain():
    with DevChain(host_wallet_eth=Decimal("1000"), host_wallet_usdt=Decimal("1000000")) as running:
        yield running


class World:
    def __init__(self, session_factory, chain: DevChain, changenow: ChangeNowSandbox, clock: ManualClock):
        self.session_factory = session_factory
        self.chain = chain
        self.changenow = changenow
        self.clock = clock
        self.crasher = Crasher()
        self.jobs = JobQueue(session_factory, clock=clock, kinds=JobRegistry(payout_engine.JOB_KINDS))
        self.client = ChangeNowClient(changenow.base_url, KEY, retries=1, backoff=0.01)
        self.exchanges = PayoutExchanges(self.client)
        self.w3 = Web3(HTTPProvider(chain.rpc_url))
        self.wallet = HostWallet(self.w3, HOST_WALLET_PRIVATE_KEY, chain.usdt_address, session_factory, clock,
                                 chain_id=chain.chain_id, checkpoint=self.crasher)
        self.runner = PayoutRunner(session_factory, self.jobs, self.exchanges, self.wallet, clock,
                                   checkpoint=self.crasher)
        self.scheduler = PayoutScheduler(session_factory, self.jobs, self.exchanges, self.wallet, clock,
                                         checkpoint=self.crasher)
        self.crashes = 0

    # ---- money in ------------------------------------------------------------------------------

    def channel(self, currency="eth", network="eth", *, strategy=PayoutStrategy.INSTANT,
                threshold: Decimal | None = None, address: str | None = None) -> Channel:
        n = next(_ids)
        if address is None:
            address = self.chain.new_account().address if network in ("eth", "bsc") else \
                self.changenow.payin_address(self.changenow.market.assets[(currency, network)])
        with self.session_factory.begin() as session:
            channel = Channel(key=f"k{n}{uuid.uuid4().hex[:6]}", owner_user_id=1000 + n, open_chat_id=-n * 10,
                              closed_chat_id=-n * 10 - 1, open_title="open", closed_title="closed",
                              status=ChannelStatus.ACTIVE, payout_currency=currency, payout_network=network,
                              payout_address=address, payout_strategy=strategy, payout_threshold_usd=threshold)
            session.add(channel)
            session.flush()
            session.expunge(channel)
        return channel

    def pay(self, channel: Channel, usd: Decimal, *, arrived: Decimal | None = None, allocate: bool = True) -> int:
        """A finished payment of `usd` (arrived: its actually_paid_at_fiat), allocated; its id."""
        n = next(_ids)
        with self.session_factory.begin() as session:
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.DONATION, channel_id=channel.id,
                              buyer_user_id=5000 + n, price_usd=usd, status=InvoiceStatus.COMPLETED)
            session.add(invoice)
            session.flush()
            payment = Payment(provider_payment_id=f"np-{n}-{uuid.uuid4().hex[:6]}", invoice_id=invoice.id,
                              status=PaymentStatus.FINISHED, pay_currency="eth", price_amount=usd,
                              actually_paid_usd=usd if arrived is None else arrived)
            session.add(payment)
            session.flush()
            if allocate:
                allocate_share(session, self.jobs, payment.id, fee_percent=FEE, now=self.clock.now())
            return payment.id

    # ---- the worker ----------------------------------------------------------------------------

    def drain(self, max_rounds: int = 200, step: timedelta = timedelta(seconds=30)) -> None:
        """Run payout jobs until none is left, moving the clock on when all are waiting.

        A Crash leaves the claimed job running with its lease, as a killed worker would."""
        for _ in range(max_rounds):
            claimed = self.jobs.claim("test-worker", limit=20, kinds=[PAYOUT_JOB])
            for job in claimed:
                try:
                    again = self.runner.run_job(int(job.payload["payout_id"]))
                except Crash:
                    self.crashes += 1
                    continue
                except PayoutFailed as failure:
                    self.jobs.fail(job, "test-worker", str(failure))
                    continue
                if again is not None:
                    self.jobs.reschedule(job, "test-worker", again.at)
                else:
                    self.jobs.complete(job, "test-worker")
            if not claimed:
                if not self.open_jobs():
                    return
                self.clock.advance(step)
        raise AssertionError("payout jobs did not settle: " + repr(self.open_jobs()))

    def open_jobs(self) -> list[tuple[int, str, str]]:
        with self.session_factory() as session:
            return [(j.id, j.state.value, j.last_error or "") for j in session.scalars(
                select(Job).where(Job.kind == PAYOUT_JOB, Job.state.in_([JobState.QUEUED, JobState.RUNNING])))]

    # ---- what happened -------------------------------------------------------------------------

    def payout(self, payout_id: int) -> Payout:
        with self.session_factory() as session:
            payout = session.get(Payout, payout_id)
            session.expunge(payout)
            return payout

    def payouts(self) -> list[Payout]:
        with self.session_factory() as session:
            rows = list(session.scalars(select(Payout).order_by(Payout.id)))
            session.expunge_all()
            return rows

    def payout_of(self, payment_id: int) -> Payout | None:
        with self.session_factory() as session:
            payment = session.get(Payment, payment_id)
            return self.payout(payment.payout_id) if payment.payout_id else None

    def chain_txs(self, payout_id: int) -> list[ChainTransaction]:
        with self.session_factory() as session:
            rows = list(session.scalars(select(ChainTransaction).where(ChainTransaction.payout_id == payout_id)))
            session.expunge_all()
            return rows

    def alerts(self) -> list[str]:
        with self.session_factory() as session:
            return [j.payload["text"] for j in session.scalars(select(Job).where(Job.kind == ALERT_JOB)
                                                                .order_by(Job.id))]

    def host_transfers(self, to: str, asset: str) -> list:
        """Transfers from the host wallet to `to` on the chain (the chain's word, not the database's)."""
        return [t for t in self.chain.transfers_to(to, asset)
                if t.from_address.lower() == self.wallet.address.lower()]


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def world(session_factory, chain, clock):
    with ChangeNowSandbox(KEY, chain, clock=clock, rate_limits=None) as changenow:
        built = World(session_factory, chain, changenow, clock)
        yield built
        built.client.close()
