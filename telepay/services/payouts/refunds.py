"""What a refund after fulfilment does to the owner's share: taken back while it is unfunded,
reported as sent once the host has signed its transfer (no money can be recalled from a chain).

`withdraw_share` runs in the caller's transaction (the refund's), and leaves the share in a
`cancelled` payout, so the money report counts it as cancelled and no batch or run pays it:

* the payout carries this share alone and is unfunded: it is cancelled (`cancel_unfunded`);
* the share is held for a threshold batch not made yet: a cancelled payout records it, and the
  held total no longer counts it;
* an unfunded payout that carries other shares too (a batch, or an instant payout that absorbed
  carried-over ones) is cancelled with this share in it; a batch's other shares are held again
  for the next batch, an instant payout's go to a new payout (`_reissue`);
* the transfer is signed (funding, funded, finished): nothing changes here; the caller sends
  the payment to review (the owner has, or is about to have, the money).

Idempotent: a share already in a cancelled payout is left as it is (`DONE_BEFORE`).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from telepay.models import Accumulation, Invoice, Payment, Payout, PayoutKind, PayoutStatus
from telepay.services.jobs import JobQueue
from telepay.services.payouts.allocation import enqueue_payout
from telepay.services.payouts.operations import cancel_unfunded, cancellable

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    NO_SHARE = "no_share"          # nothing was allocated to the owner
    CANCELLED = "cancelled"        # its own payout, unfunded, is cancelled
    HELD_CANCELLED = "held_cancelled"  # a threshold share not batched yet
    TAKEN_OUT = "taken_out"        # its payout, shared with other shares, cancelled; the others go on
    SENT = "sent"                  # the host has signed (or made) the transfer: cannot be stopped
    DONE_BEFORE = "done_before"


@dataclass(frozen=True)
class Withdrawal:
    """What happened to one payment's share; `payout_id` is the payout that carried it (for a held
    share, the cancelled payout that now records it)."""

    outcome: Outcome
    share_usd: Decimal | None
    payout_id: int | None
    status_before: PayoutStatus | None
    status_now: PayoutStatus | None
    rest_id: int | None = None     # taken out of an instant payout: the new payout paying the others


def withdraw_share(session: Session, jobs: JobQueue, payment: Payment, now: datetime, why: str) -> Withdrawal:
    """Take back `payment`'s owner share if it is not funded yet. Flushes, never commits."""
    share = payment.owner_share_usd
    if share is None:
        return Withdrawal(Outcome.NO_SHARE, None, None, None, None)
    accumulation = session.scalars(select(Accumulation).where(Accumulation.payment_id == payment.id)
                                   .with_for_update()).one_or_none()
    payout_id = payment.payout_id or (accumulation.payout_id if accumulation else None)
    if payout_id is None:
        record = _record(session, payment, accumulation, now, why)
        logger.info("payment %s: held share %s USD cancelled (payout %s records it): %s", payment.id, share,
                    record.id, why)
        return Withdrawal(Outcome.HELD_CANCELLED, share, record.id, None, PayoutStatus.CANCELLED)
    payout = session.get_one(Payout, payout_id, with_for_update=True)
    before = payout.status
    if before == PayoutStatus.CANCELLED:
        return Withdrawal(Outcome.DONE_BEFORE, share, payout.id, before, before)
    if not cancellable(session, payout):
        logger.warning("payment %s: share %s USD is in payout %s, %s: sent, not recalled", payment.id, share,
                       payout.id, before.value)
        return Withdrawal(Outcome.SENT, share, payout.id, before, before)
    shared = _shared(session, payout, payment)
    cancel_unfunded(session, payout, now, why + ("; its other shares are paid apart" if shared else ""))
    if not shared:
        logger.info("payment %s: payout %s (%s) cancelled: %s", payment.id, payout.id, before.value, why)
        return Withdrawal(Outcome.CANCELLED, share, payout.id, before, payout.status)
    # The cancelled payout keeps this share (the report counts it as cancelled); the others go on.
    payment.payout_id = payout.id
    if accumulation is not None:
        accumulation.payout_id = payout.id  # a batch's other shares are held again for the next batch
    rest = _reissue(session, jobs, payout, payment.id, share, now) if payout.kind == PayoutKind.INSTANT else None
    session.flush()
    logger.info("payment %s: share %s USD taken out of payout %s (%s, cancelled); the rest %s", payment.id,
                share, payout.id, before.value, f"in payout {rest.id}" if rest else "held for the next batch")
    return Withdrawal(Outcome.TAKEN_OUT, share, payout.id, before, payout.status, rest.id if rest else None)


def _shared(session: Session, payout: Payout, payment: Payment) -> bool:
    """The payout also pays other payments' shares (carried-over ones absorbed, or a batch's)."""
    payments = session.scalar(select(func.count()).where(Payment.payout_id == payout.id, Payment.id != payment.id))
    held = session.scalar(select(func.count()).where(Accumulation.payout_id == payout.id,
                                                     Accumulation.payment_id != payment.id))
    return bool(payments or held)


def _reissue(session: Session, jobs: JobQueue, cancelled: Payout, refunded_id: int, share: Decimal,
             now: datetime) -> Payout:
    """A new instant payout for the other shares of `cancelled`. A new one, not the old one with a
    smaller amount: an exchange ChangeNOW made for the old amount carries the old payout's tag,
    and the runner, looking its exchange up by tag, would find and fund it."""
    rest = Payout(channel_id=cancelled.channel_id, kind=cancelled.kind, amount_usd=cancelled.amount_usd - share,
                  funding_asset=cancelled.funding_asset, to_currency=cancelled.to_currency,
                  to_network=cancelled.to_network, to_address=cancelled.to_address, created_at=now, updated_at=now)
    if cancelled.resume_status is not None:  # it was in review: so is the rest, for the same reason
        rest.status, rest.resume_status = PayoutStatus.NEEDS_REVIEW, PayoutStatus.PENDING
        rest.last_error = f"taken from payout {cancelled.id} (in review): {cancelled.last_error}"
    session.add(rest)
    session.flush()
    session.execute(update(Payment).where(Payment.payout_id == cancelled.id, Payment.id != refunded_id)
                    .values(payout_id=rest.id).execution_options(synchronize_session=False))
    if rest.status == PayoutStatus.PENDING:
        enqueue_payout(session, jobs, rest.id, f"rest-of:{cancelled.id}")
    return rest


def _record(session: Session, payment: Payment, accumulation: Accumulation | None, now: datetime,
            why: str) -> Payout:
    """A cancelled batch payout holding just this held share, so the report and the batches see it
    settled. No destination was ever chosen for it."""
    record = Payout(channel_id=session.get_one(Invoice, payment.invoice_id).channel_id, kind=PayoutKind.BATCH,
                    status=PayoutStatus.CANCELLED, amount_usd=payment.owner_share_usd, funding_asset="USDT",
                    to_currency="", to_network="", to_address="", last_error=why, created_at=now, updated_at=now)
    session.add(record)
    session.flush()
    payment.payout_id = record.id
    if accumulation is not None:
        accumulation.payout_id = record.id
    session.flush()
    return record
