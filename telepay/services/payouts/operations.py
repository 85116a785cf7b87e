"""What operators do with payouts (`telepay payouts ...`, `telepay report`): list, show, retry,
cancel, and the per-channel money report.

The report puts every allocated payment's share in exactly one bucket, by the payout it is
linked to now: paid out (finished), carried over (below ChangeNOW's minimum, waiting for more),
cancelled (stopped by an operator; the money stays with the platform until it is settled by
hand), or pending (held for a batch, on its way, or in review). So for each channel
`received == fees + paid out + carried over + cancelled + pending`, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from telepay.models import (
    Accumulation, ChainTransaction, ChainTxAttempt, Invoice, Payment, Payout, PayoutKind, PayoutStatus,
)
from telepay.services.jobs import JobQueue
from telepay.services.payouts.allocation import enqueue_payout
from telepay.services.payouts.locks import advisory_lock

_CANCELLABLE = (PayoutStatus.PENDING, PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED,
                PayoutStatus.CARRIED_OVER, PayoutStatus.NEEDS_REVIEW)


class PayoutRefused(Exception):
    """The operation does not apply to the payout as it is now (message says why)."""


@dataclass
class ChannelMoney:
    channel_id: int
    received: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    paid_out: Decimal = Decimal(0)
    pending: Decimal = Decimal(0)
    carried_over: Decimal = Decimal(0)
    cancelled: Decimal = Decimal(0)
    payments: int = 0


def bucket(status: PayoutStatus | None) -> str:
    if status == PayoutStatus.FINISHED:
        return "paid_out"
    if status == PayoutStatus.CARRIED_OVER:
        return "carried_over"
    if status == PayoutStatus.CANCELLED:
        return "cancelled"
    return "pending"


def report(session: Session) -> list[ChannelMoney]:
    rows = session.execute(
        select(Invoice.channel_id, Payout.status, func.count(), func.sum(Payment.owner_share_usd),
               func.sum(Payment.platform_fee_usd))
        .join(Invoice, Invoice.id == Payment.invoice_id).outerjoin(Payout, Payout.id == Payment.payout_id)
        .where(Payment.owner_share_usd.is_not(None)).group_by(Invoice.channel_id, Payout.status))
    channels: dict[int, ChannelMoney] = {}
    for channel_id, status, count, shares, fees in rows:
        money = channels.setdefault(channel_id, ChannelMoney(channel_id))
        money.payments += count
        money.fees += fees
        money.received += shares + fees
        setattr(money, bucket(status), getattr(money, bucket(status)) + shares)
    return [channels[k] for k in sorted(channels)]


def list_payouts(session: Session, status: PayoutStatus | None = None, channel_id: int | None = None,
                 limit: int = 50) -> list[Payout]:
    query = select(Payout).order_by(Payout.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Payout.status == status)
    if channel_id is not None:
        query = query.where(Payout.channel_id == channel_id)
    return list(session.scalars(query))


def show_payout(session: Session, payout_id: int) -> dict[str, Any]:
    payout = session.get(Payout, payout_id)
    if payout is None:
        raise LookupError(f"no payout {payout_id}")
    payments = list(session.scalars(select(Payment).where(Payment.payout_id == payout_id).order_by(Payment.id)))
    txs = list(session.scalars(select(ChainTransaction).where(ChainTransaction.payout_id == payout_id)))
    # Every signed version of the transfer (more than one when a stuck one was replaced).
    attempts = list(session.scalars(select(ChainTxAttempt).where(
        ChainTxAttempt.chain_transaction_id.in_([tx.id for tx in txs])).order_by(ChainTxAttempt.id)))
    swept = list(session.scalars(select(Accumulation.id).where(Accumulation.sweep_id == payout_id)))
    return {"payout": payout, "payments": payments, "transactions": txs, "attempts": attempts,
            "swept_shares": swept}


def retry_payout(session_factory: sessionmaker[Session], jobs: JobQueue, payout_id: int, now: datetime) -> PayoutStatus:
    """Resume a payout in review (from where it stopped) or a carried-over one (quote again)."""
    with session_factory.begin() as session:
        payout = session.get(Payout, payout_id, with_for_update=True)
        if payout is None:
            raise LookupError(f"no payout {payout_id}")
        if payout.status == PayoutStatus.NEEDS_REVIEW:
            payout.status = payout.resume_status or PayoutStatus.PENDING
        elif payout.status == PayoutStatus.CARRIED_OVER:
            payout.status = PayoutStatus.PENDING
        else:
            raise PayoutRefused(f"payout {payout_id} is {payout.status.value}; only needs_review or carried_over "
                                "payouts can be retried")
        payout.resume_status, payout.failing_since, payout.updated_at = None, None, now
        enqueue_payout(session, jobs, payout_id, f"retry:{now.isoformat()}")
        return payout.status


def cancel_payout(session_factory: sessionmaker[Session], payout_id: int, now: datetime, reason: str) -> None:
    """Stop a payout the host has not funded (`cancel_unfunded`), as an operator's command."""
    engine = session_factory.kw["bind"]
    # Wait for a run in progress to finish its step, so none is halfway through funding it.
    with advisory_lock(engine, f"payout:{payout_id}"), session_factory.begin() as session:
        payout = session.get(Payout, payout_id, with_for_update=True)
        if payout is None:
            raise LookupError(f"no payout {payout_id}")
        if not cancellable(session, payout):
            signed = is_signed(session, payout.id)
            raise PayoutRefused(f"payout {payout_id} is {payout.status.value}"
                                + (" and its transfer is signed" if signed else "") + "; it cannot be cancelled")
        cancel_unfunded(session, payout, now, f"cancelled by an operator: {reason}")


def is_signed(session: Session, payout_id: int) -> bool:
    """The host has signed the payout's transfer: from then on its money counts as sent."""
    return bool(session.scalar(select(func.count()).where(ChainTransaction.payout_id == payout_id)))


def cancellable(session: Session, payout: Payout) -> bool:
    return payout.status in _CANCELLABLE and not is_signed(session, payout.id)


def cancel_unfunded(session: Session, payout: Payout, now: datetime, why: str) -> None:
    """Cancel a payout locked `FOR UPDATE` and found `cancellable`, in the caller's transaction.

    A batch's shares go back to be held for the next batch; an instant payout's share stays
    recorded as cancelled. Safe against a run of the payout at the same moment: every step of
    the runner moves the status with a compare-and-set, and the transfer is stored in the same
    transaction as the move to `funding`, which this row lock orders before or after us."""
    payout.status, payout.updated_at = PayoutStatus.CANCELLED, now
    payout.last_error = why + (f" (exchange {payout.exchange_id} left unfunded)" if payout.exchange_id else "")
    if payout.kind == PayoutKind.BATCH:
        session.execute(update(Accumulation).where(Accumulation.payout_id == payout.id).values(payout_id=None))
        session.execute(update(Payment).where(Payment.payout_id == payout.id).values(payout_id=None))
    elif payout.kind == PayoutKind.SWEEP:
        session.execute(update(Accumulation).where(Accumulation.sweep_id == payout.id).values(sweep_id=None))
