"""The Stars pieces assembled for runtime (and the CLI): one object the bot and timers share."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.config import Settings
from telepay.services.fulfilment import Fulfilment
from telepay.services.jobs import JobQueue
from telepay.services.stars.checkout import StarsCheckout
from telepay.services.stars.holds import TIMER_NAME as RELEASE_TIMER
from telepay.services.stars.holds import ShareReleaser
from telepay.services.stars.receipts import StarsReceipts
from telepay.services.stars.reconcile import StarsReconciler

RECONCILE_TIMER = "stars.reconcile"

__all__ = ["RECONCILE_TIMER", "RELEASE_TIMER", "StarsServices"]


@dataclass
class StarsServices:
    checkout: StarsCheckout
    receipts: StarsReceipts
    releaser: ShareReleaser
    reconciler: StarsReconciler

    @classmethod
    def build(cls, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, settings: Settings,
              fulfilment: Fulfilment) -> StarsServices:
        rate, fee = settings.stars_usd_rate, settings.platform_fee_percent
        return cls(
            checkout=StarsCheckout(session_factory, clock, rate=rate, stars_only=settings.stars_only),
            receipts=StarsReceipts(session_factory, jobs, clock, fulfilment=fulfilment, rate=rate, fee_percent=fee,
                                   hold_days=settings.stars_payout_hold_days),
            releaser=ShareReleaser(session_factory, jobs, clock, fee_percent=fee),
            reconciler=StarsReconciler(session_factory, jobs, clock),
        )
