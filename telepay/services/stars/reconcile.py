"""Reconciliation: our Stars records against Telegram's own ledger (getStarTransactions).

Telegram lists every Star the bot received (`source`: the paying user) and every refund
(`receiver`: the user, same id as the payment refunded). Each run compares both ways and keeps
the result (`star_reconciliations`); every difference is an operator alert, once per difference:

* missing_here: Telegram took Stars we have no record of (a lost `successful_payment`: a buyer
  paid and got nothing);
* missing_at_telegram: a payment we recorded that Telegram does not list;
* amount_differs: the same charge with another amount;
* refund_not_recorded / refund_not_at_telegram: the two sides disagree about a refund.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import StarPayment, StarPaymentStatus, StarReconciliation
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators

logger = logging.getLogger(__name__)

PAGE = 100


@dataclass(frozen=True)
class TelegramTransaction:
    id: str
    amount: int
    incoming: bool


def from_ptb(transaction: Any) -> TelegramTransaction | None:
    """A PTB StarTransaction as the comparison needs it; None for what is not a user's payment
    or refund (withdrawals to Fragment, ads, ...)."""
    partner = transaction.source or transaction.receiver
    if partner is None or getattr(partner, "type", None) != "user":
        return None
    return TelegramTransaction(transaction.id, transaction.amount, transaction.source is not None)


def differences(ours: Iterable[StarPayment], theirs: Iterable[TelegramTransaction]) -> list[dict]:
    paid = {t.id: t for t in theirs if t.incoming}
    refunded = {t.id for t in theirs if not t.incoming}
    found: list[dict] = []
    recorded = {row.charge_id: row for row in ours}
    for charge_id, transaction in paid.items():
        row = recorded.get(charge_id)
        if row is None:
            found.append({"kind": "missing_here", "charge_id": charge_id, "telegram_stars": transaction.amount})
        elif row.stars != transaction.amount:
            found.append({"kind": "amount_differs", "charge_id": charge_id, "ours": row.stars,
                          "telegram_stars": transaction.amount})
    for charge_id, row in recorded.items():
        if charge_id not in paid:
            found.append({"kind": "missing_at_telegram", "charge_id": charge_id, "ours": row.stars})
        refunded_here = row.status == StarPaymentStatus.REFUNDED
        if charge_id in refunded and not refunded_here:
            found.append({"kind": "refund_not_recorded", "charge_id": charge_id})
        elif refunded_here and charge_id not in refunded:
            found.append({"kind": "refund_not_at_telegram", "charge_id": charge_id})
    return found


class StarsReconciler:
    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock

    async def fetch(self, bot) -> list[TelegramTransaction]:
        """Every transaction Telegram lists for the bot, page by page."""
        found, offset = [], 0
        while True:
            page = (await bot.get_star_transactions(offset=offset, limit=PAGE)).transactions
            found += [t for t in map(from_ptb, page) if t is not None]
            offset += len(page)
            if len(page) < PAGE:
                return found

    async def run(self, bot) -> list[dict]:
        theirs = await self.fetch(bot)
        return await asyncio.to_thread(self.compare, theirs)

    def compare(self, theirs: list[TelegramTransaction]) -> list[dict]:
        """Compare, keep the result, alert on each difference; the differences."""
        with self.session_factory.begin() as session:
            ours = list(session.scalars(select(StarPayment)))
            found = differences(ours, theirs)
            session.add(StarReconciliation(checked_at=self.clock.now(), telegram_count=len(theirs),
                                           differences=found))
            for difference in found:
                alert_operators(session, self.jobs,
                                f"⭐ Stars reconciliation: {difference['kind']} — {difference}",
                                key=f"stars:reconcile:{difference['kind']}:{difference['charge_id']}")
        if found:
            logger.warning("stars reconciliation: %s differences with Telegram's ledger", len(found))
        else:
            logger.info("stars reconciliation: %s transactions agree with ours", len(theirs))
        return found
