"""Failures and review: how a failing payout is recorded, when it goes to `needs_review`, and
the operators' alert that goes with it.

A failure that retrying may fix starts (or continues) the payout's failure streak
(`failing_since`); any step that succeeds ends it. A streak of 24 h, or a failure retrying
cannot fix, parks the payout in `needs_review`, remembering the status it stopped at, so
`telepay payouts retry` resumes from there.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from telepay.models import Payout, PayoutStatus
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators
from telepay.services.payouts.wallet import InsufficientFunds

logger = logging.getLogger(__name__)

ACTIVE = (PayoutStatus.PENDING, PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED,
          PayoutStatus.FUNDING, PayoutStatus.FUNDED)


def record_failure(session_factory: sessionmaker[Session], jobs: JobQueue, now: datetime, payout_id: int,
                   failure: Exception, review_after: timedelta) -> bool:
    """Record a failure; True when it sent the payout to review (failing for `review_after`)."""
    message = f"{type(failure).__name__}: {failure}"[:2000]
    with session_factory.begin() as session:
        payout = session.get(Payout, payout_id, with_for_update=True)
        if payout is None or payout.status not in ACTIVE:
            return False
        payout.last_error = message
        payout.failing_since = payout.failing_since or now
        if isinstance(failure, InsufficientFunds):
            alert_operators(session, jobs, f"Host wallet is short of {failure.asset}: payout {payout_id} needs "
                         f"{failure.need} base units, the wallet has {failure.have}. Top it up.",
                         key=f"low-balance:{failure.asset}:{now:%Y-%m-%dT%H}")
        parked = now - payout.failing_since >= review_after
        if parked:
            to_review(session, jobs, now, payout, f"failing since {payout.failing_since:%Y-%m-%d %H:%M} UTC: {message}")
    logger.warning("payout %s step failed: %s", payout_id, message)
    return parked


def park(session_factory: sessionmaker[Session], jobs: JobQueue, now: datetime, payout_id: int,
         reason: str) -> PayoutStatus:
    """Send an active payout to review at once (a failure retrying cannot fix)."""
    with session_factory.begin() as session:
        payout = session.get(Payout, payout_id, with_for_update=True)
        if payout.status in ACTIVE:
            to_review(session, jobs, now, payout, reason)
        return payout.status


def to_review(session: Session, jobs: JobQueue, now: datetime, payout: Payout, reason: str) -> None:
    payout.resume_status, payout.status = payout.status, PayoutStatus.NEEDS_REVIEW
    payout.last_error, payout.updated_at = reason[:2000], now
    logger.error("payout %s needs review: %s", payout.id, reason)
    alert_operators(session, jobs, f"Payout {payout.id} ({payout.kind.value}, {payout.amount_usd} USD"
                 f"{f', channel {payout.channel_id}' if payout.channel_id else ''}) needs review: {reason}. "
                 f"See `telepay payouts show {payout.id}`.", key=f"payout-review:{payout.id}:{now.isoformat()}")
