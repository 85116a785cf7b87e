"""The 5-minute payout timer: sweeps, threshold batches, and the host-balance check.

* Sweep: threshold shares arrive as ETH; the host converts the ones not yet swept to its own
  USDT address through ChangeNOW, all together, once their total clears ChangeNOW's minimum.
  A sweep is a `Payout` of kind `sweep` (no channel), run by the same `payout.run` job.
* Batch: an owner whose held total (unbatched shares + carried-over batches) reaches the
  channel's threshold gets one `batch` payout funded in USDT. Choosing the shares, linking
  them and their payments to the batch and queueing its job is one transaction.
* Balance: the host's ETH and USDT against what is owed and not yet funded; short (less than
  HOST_WALLET_LOW_BALANCE_USD to spare) -> one alert per asset per hour.

Safe to run at any moment and from several processes: every decision is made again inside the
transaction that acts on it, under the same per-channel lock `allocate_share` takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import Accumulation, Channel, Payment, Payout, PayoutKind, PayoutStatus
from telepay.models.channels import PayoutStrategy
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators
from telepay.services.payouts.allocation import CHANNEL_LOCK, absorb_carried_over, enqueue_payout, held_total
from telepay.services.payouts.exchanges import PayoutExchanges
from telepay.services.payouts.wallet import ETH, USDT, HostWallet

logger = logging.getLogger(__name__)

TIMER_NAME = "payouts.batches"
SWEEP_LOCK = 7302
_UNFUNDED = (PayoutStatus.PENDING, PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED)


@dataclass
class TimerResult:
    sweep_id: int | None = None
    batch_ids: list[int] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


class PayoutScheduler:
    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, exchanges: PayoutExchanges,
                 wallet: HostWallet, clock: Clock, *, low_balance_usd: Decimal = Decimal("100"),
                 checkpoint: Callable[[str], None] | None = None):
        self.session_factory = session_factory
        self.jobs = jobs
        self.exchanges = exchanges
        self.wallet = wallet
        self.clock = clock
        self.low_balance_usd = low_balance_usd
        self.checkpoint = checkpoint or (lambda name: None)

    def run_once(self) -> TimerResult:
        """One tick. External calls (price, limits, balances) happen before any transaction opens."""
        result = TimerResult()
        price = self.exchanges.eth_price_usd()
        result.sweep_id = self.sweep(price)
        result.batch_ids = self.batches()
        result.alerts = self.check_balance(price)
        return result

    # ---- sweeps ------------------------------------------------------------------------------------

    def sweep(self, eth_price: Decimal) -> int | None:
        limits = self.exchanges.client.range("eth", "usdt", "eth", "eth")
        # A margin over the minimum: the reverse quote adds ChangeNOW's fees on top of the shares.
        minimum_usd = (limits.min_amount or Decimal(0)) * eth_price * Decimal("1.1")
        with self.session_factory.begin() as session:
            session.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": SWEEP_LOCK})
            unswept = list(session.scalars(select(Accumulation).where(Accumulation.sweep_id.is_(None))
                                           .order_by(Accumulation.id).with_for_update()))
            total = sum((a.amount_usd for a in unswept), Decimal(0))
            if not unswept or total < minimum_usd:
                return None
            now = self.clock.now()
            sweep = Payout(channel_id=None, kind=PayoutKind.SWEEP, amount_usd=total, funding_asset=ETH,
                           to_currency="usdt", to_network="eth", to_address=self.wallet.address,
                           created_at=now, updated_at=now)
            session.add(sweep)
            session.flush()
            for accumulation in unswept:
                accumulation.sweep_id = sweep.id
            enqueue_payout(session, self.jobs, sweep.id, "start")
            logger.info("sweep %s: %s USD of %d held shares, ETH -> host USDT", sweep.id, total, len(unswept))
            return sweep.id

    # ---- batches -----------------------------------------------------------------------------------

    def batches(self) -> list[int]:
        with self.session_factory() as session:
            due = list(session.scalars(
                select(Accumulation.channel_id)
                .where(Accumulation.payout_id.is_(None))
                .group_by(Accumulation.channel_id)
                .having(func.sum(Accumulation.amount_usd) > 0)))
        started = []
        for channel_id in due:
            payout_id = self.batch(channel_id)
            if payout_id is not None:
                started.append(payout_id)
        return started

    def batch(self, channel_id: int) -> int | None:
        """One channel's batch, if its held total reached the threshold; the payout id."""
        with self.session_factory.begin() as session:
            session.execute(text("SELECT pg_advisory_xact_lock(:ns, :id)"), {"ns": CHANNEL_LOCK, "id": channel_id})
            channel = session.get(Channel, channel_id)
            # An owner who switched to instant payouts gets what is still held at once.
            threshold = channel.payout_threshold_usd if channel.payout_strategy == PayoutStrategy.THRESHOLD \
                else Decimal(0)
            if threshold is None or held_total(session, channel_id) < threshold or not channel.payout_address:
                return None
            shares = list(session.scalars(select(Accumulation).where(
                Accumulation.channel_id == channel_id, Accumulation.payout_id.is_(None)).with_for_update()))
            if not shares:
                return None  # only carried-over batches: wait for new money rather than retry the same
            now = self.clock.now()
            payout = Payout(channel_id=channel_id, kind=PayoutKind.BATCH, funding_asset=USDT,
                            amount_usd=sum((a.amount_usd for a in shares), Decimal(0)),
                            to_currency=channel.payout_currency, to_network=channel.payout_network,
                            to_address=channel.payout_address, created_at=now, updated_at=now)
            session.add(payout)
            session.flush()
            for share in shares:
                share.payout_id = payout.id
            session.execute(update(Payment).where(Payment.id.in_([a.payment_id for a in shares]))
                            .values(payout_id=payout.id).execution_options(synchronize_session=False))
            self.checkpoint("mid_batch")
            absorb_carried_over(session, payout, now)
            enqueue_payout(session, self.jobs, payout.id, "start")
            logger.info("batch payout %s for channel %s: %s USD from %d shares", payout.id, channel_id,
                        payout.amount_usd, len(shares), extra={"payout_id": payout.id})
            return payout.id

    # ---- balance -----------------------------------------------------------------------------------

    def owed_unfunded(self) -> dict[str, Decimal]:
        """USD the host still has to send, by the asset it pays with."""
        with self.session_factory() as session:
            rows = session.execute(select(Payout.funding_asset, func.sum(Payout.amount_usd))
                                   .where(Payout.status.in_(_UNFUNDED)).group_by(Payout.funding_asset))
            owed = {asset: Decimal(total) for asset, total in rows}
        return {ETH: owed.get(ETH, Decimal(0)), USDT: owed.get(USDT, Decimal(0))}

    def check_balance(self, eth_price: Decimal) -> list[str]:
        owed = self.owed_unfunded()
        have = {ETH: Decimal(self.wallet.balance(ETH)).scaleb(-18) * eth_price,
                USDT: Decimal(self.wallet.balance(USDT)).scaleb(-6)}
        short = [asset for asset in (ETH, USDT) if have[asset] - owed[asset] < self.low_balance_usd]
        if short:
            now = self.clock.now()
            with self.session_factory.begin() as session:
                for asset in short:
                    alert_operators(session, self.jobs,
                                 f"Host wallet {self.wallet.address} is low on {asset}: worth {have[asset]:.2f} USD "
                                 f"against {owed[asset]:.2f} USD of payouts not yet funded (margin "
                                 f"{self.low_balance_usd} USD). Top it up.",
                                 key=f"low-balance:{asset}:{now:%Y-%m-%dT%H}")
        return short
