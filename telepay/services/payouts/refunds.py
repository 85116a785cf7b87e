"""What a refund after fulfilment does to the owner's share: taken back while it is unfunded,
reported as sent once the host has signed its transfer (no money can be recalled from a chain).

`withdraw_share` runs in the caller's transaction (the refund's), and leaves the share in a
`cancelled` payout, so the money report counts it as cancelled and no batch or run pays it:

* the payout carries this share alone and is unfunded: it is cancelled (`cancel_unfunded`);
* the share is held for a threshold batch not made yet: a cancelled payout records it, and the
  held total no longer counts it;
* an unfunded batch with other shares: the batch is cancelled (its other shares go back to be
  held, and the next batch takes them), and this share is recorded as cancelled;
* an unfunded instant payout that absorbed carried-over shares: this share is taken out of it
  and recorded as cancelled; the rest is quoted again and goes on;
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

from sqlalchemy import func, select
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
    TAKEN_OUT = "taken_out"        # taken out of a payout that carried other shares too
    SENT = "sent"                  # the host has signed (or made) the transfer: cannot be stopped
    DONE_BEFORE = "done_before"


@dataclass(frozen=True)
class Withdrawal:
    """What happened to one payment's share; `payout_id` is the payout that carried it (or, for a
    held share, the cancelled payout that now records it)."""

    outcome: Outcome
    share_usd: Decimal | None
    payout_id: int | None
    status_before: PayoutStatus | None
    status_now: PayoutStatus | None
    record_id: int | None = None   # the cancelled payout recording a share taken out of another


def withdraw_share(session: Session, jobs: JobQueue, payment: Payment, now: datetime, why: str) -> Withdrawal:
    """Take back `payment`'s owner share if it is not funded yet. Flushes, never commits."""
    share = payment.owner_share_usd
    if share is None:
        return Withdrawal(Outcome.NO_SHARE, None, None, None, None)
    accumulation = session.scalars(select(Accumulation).where(Accumulation.payment_id == payment.id)
                                   .with_for_update()).one_or_none()
    payout_id = payment.payout_id or (accumulation.payout_id if accumulation else None)
    if payout_id is None:
        record = _record(session, payment, accumulation, PayoutKind.BATCH, None, now, why)
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
    if not _shared(session, payout, payment):
        cancel_unfunded(session, payout, now, why)
        logger.info("payment %s: payout %s (%s) cancelled: %s", payment.id, payout.id, before.value, why)
        return Withdrawal(Outcome.CANCELLED, share, payout.id, before, payout.status)
    if payout.kind == PayoutKind.BATCH:
        cancel_unfunded(session, payout, now, why + "; its other shares are held for the next batch")
    else:
        _reduce(session, jobs, payout, share, payment.id, now)
    record = _record(session, payment, accumulation, payout.kind, payout, now, why)
    logger.info("payment %s: share %s USD taken out of payout %s (%s -> %s), recorded in payout %s", payment.id,
                share, payout.id, before.value, payout.status.value, record.id)
    return Withdrawal(Outcome.TAKEN_OUT, share, payout.id, before, payout.status, record.id)


def _shared(session: Session, payout: Payout, payment: Payment) -> bool:
    """The payout also pays other payments' shares (carried-over ones absorbed, or a batch's)."""
    payments = session.scalar(select(func.count()).where(Payment.payout_id == payout.id, Payment.id != payment.id))
    held = session.scalar(select(func.count()).where(Accumulation.payout_id == payout.id,
                                                     Accumulation.payment_id != payment.id))
    return bool(payments or held)


def _reduce(session: Session, jobs: JobQueue, payout: Payout, share: Decimal, payment_id: int,
            now: datetime) -> None:
    """Take `share` out of an unfunded instant payout. A quote or exchange made for the old amount
    is dropped (an exchange waiting for a deposit is simply never funded): the runner quotes the
    rest afresh. A payout held in review or carried over stays so."""
    payout.amount_usd -= share
    payout.updated_at = now
    if payout.status in (PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED):
        payout.status = PayoutStatus.PENDING
    if payout.resume_status in (PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED):
        payout.resume_status = PayoutStatus.PENDING
    if payout.status == PayoutStatus.PENDING or payout.resume_status == PayoutStatus.PENDING:
        payout.rate_id = payout.exchange_id = payout.payin_address = None
        payout.from_amount = payout.to_amount = payout.exchange_requested_at = None
    if payout.status == PayoutStatus.PENDING:
        enqueue_payout(session, jobs, payout.id, f"refund:{payment_id}")


def _record(session: Session, payment: Payment, accumulation: Accumulation | None, kind: PayoutKind,
            carrier: Payout | None, now: datetime, why: str) -> Payout:
    """A cancelled payout holding just this share, so the report and the batches see it settled."""
    channel_id = session.get_one(Invoice, payment.invoice_id).channel_id
    # A threshold share not batched yet never had a destination chosen for it.
    asset, currency, network, address = ((carrier.funding_asset, carrier.to_currency, carrier.to_network,
                                          carrier.to_address) if carrier else ("USDT", "", "", ""))
    record = Payout(channel_id=channel_id, kind=kind, status=PayoutStatus.CANCELLED,
                    amount_usd=payment.owner_share_usd, funding_asset=asset, to_currency=currency,
                    to_network=network, to_address=address, last_error=why, created_at=now, updated_at=now)
    session.add(record)
    session.flush()
    payment.payout_id = record.id
    if accumulation is not None:
        accumulation.payout_id = record.id
    session.flush()
    return record
