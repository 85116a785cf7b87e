"""The payout engine assembled: what `runtime.py` builds once and hands to the worker and timers.

The clients (ChangeNOW, web3) are built by the composition root and passed in; this module only
puts the pieces together and says which job kinds and which timer they serve.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot
from web3 import Web3

from telepay.clients.changenow import ChangeNowClient
from telepay.clock import Clock
from telepay.services.jobs import JobKind, JobQueue
from telepay.services.payouts.allocation import PAYOUT_JOB
from telepay.services.payouts.batches import TIMER_NAME, PayoutScheduler
from telepay.services.payouts.exchanges import PayoutExchanges
from telepay.services.payouts.runner import PAYOUT_RETRY, PayoutRunner
from telepay.services.payouts.wallet import HostWallet

__all__ = ["JOB_KINDS", "PAYOUT_JOB", "PayoutEngine", "TIMER_NAME"]


@dataclass
class PayoutEngine:
    wallet: HostWallet
    exchanges: PayoutExchanges
    runner: PayoutRunner
    scheduler: PayoutScheduler

    @classmethod
    def build(cls, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, *,
              changenow: ChangeNowClient, w3: Web3, private_key: str, usdt_address: str,
              chain_id: int, confirmations: int, replace_after_seconds: float,
              eth_min_fee_multiple: Decimal, poll_seconds: float = 30,
              low_balance_usd: Decimal = Decimal("100")) -> PayoutEngine:
        wallet = HostWallet(w3, private_key, usdt_address, session_factory, clock, chain_id=chain_id,
                            confirmations=confirmations, replace_after=timedelta(seconds=replace_after_seconds))
        exchanges = PayoutExchanges(changenow)
        runner = PayoutRunner(session_factory, jobs, exchanges, wallet, clock, poll_seconds=poll_seconds,
                              review_after=timedelta(hours=24), eth_min_fee_multiple=eth_min_fee_multiple)
        scheduler = PayoutScheduler(session_factory, jobs, exchanges, wallet, clock, low_balance_usd=low_balance_usd)
        return cls(wallet, exchanges, runner, scheduler)

    async def tick(self) -> bool:
        """One run of the batch timer; True when it queued payouts (the worker should look now)."""
        result = await asyncio.to_thread(self.scheduler.run_once)
        return bool(result.sweep_id or result.batch_ids or result.alerts)


class _Needs(Protocol):
    @property
    def payouts(self) -> PayoutEngine | None: ...


def _runner(services: _Needs, bot: Bot) -> PayoutRunner | None:
    # Without the payout settings this process runs no payouts; their jobs wait for one that does.
    return services.payouts.runner if services.payouts is not None else None


JOB_KINDS = (JobKind(PAYOUT_JOB, _runner, PAYOUT_RETRY),)
