"""Share allocation: a finished payment's money split into the owner's share and the platform fee,
and handed to the payout path its channel chose (an instant payout, or held for a batch).

Rounding. USD amounts are exact Decimals. The owner's share is rounded *down* to SHARE_QUANTUM
(one micro-dollar, which is exactly one base unit of 6-decimal USDT), and the platform fee is
the rest, so `share + fee == arrived` holds exactly for every payment and a share converts to
USDT base units without rounding again. Crypto amounts are fixed at transfer time, in the
asset's base units (wei, USDT units), and recorded on the payout and its chain transaction.

A share below ChangeNOW's minimum is never dropped: its payout is carried over, and the next
payout of the same kind for the channel absorbs it (`absorb_carried_over`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from telepay.models import (
    Accumulation, Channel, Invoice, InvoiceKind, Payment, PaymentStatus, Payout, PayoutKind, PayoutStatus,
)
from telepay.models.channels import PayoutStrategy
from telepay.services.jobs import JobQueue

logger = logging.getLogger(__name__)

SHARE_QUANTUM = Decimal("0.000001")
PAYOUT_JOB = "payout.run"
# Advisory-lock namespace (first key of the two-key form) for per-channel allocation.
CHANNEL_LOCK = 7301


@dataclass(frozen=True)
class Allocation:
    """What `allocate_share` did with one payment, for the owner's notification."""

    payment_id: int
    channel_id: int
    arrived_usd: Decimal
    owner_share_usd: Decimal
    platform_fee_usd: Decimal
    strategy: PayoutStrategy
    payout_id: int | None            # instant: the payout started (or carried into)
    accumulation_id: int | None      # threshold: the held share
    held_usd: Decimal | None         # threshold: the owner's unpaid total now, this share included
    threshold_usd: Decimal | None
    created: bool                    # False: the payment had been allocated before; nothing changed


def split(arrived_usd: Decimal, fee_percent: Decimal) -> tuple[Decimal, Decimal]:
    """(owner share, platform fee): the share rounded down to SHARE_QUANTUM, the fee the rest."""
    if not isinstance(arrived_usd, Decimal) or not isinstance(fee_percent, Decimal):
        raise TypeError("money is Decimal")
    if arrived_usd < 0 or not Decimal(0) <= fee_percent <= Decimal(100):
        raise ValueError(f"cannot split {arrived_usd} at {fee_percent}%")
    share = (arrived_usd * (Decimal(100) - fee_percent) / Decimal(100)).quantize(SHARE_QUANTUM, rounding=ROUND_DOWN)
    return share, arrived_usd - share


def arrived_usd(payment: Payment, invoice: Invoice) -> Decimal:
    """What actually arrived in USD terms: NOWPayments' `actually_paid_at_fiat` when it gives one.

    NOWPayments sometimes sends 0 or nothing there; a finished payment that completed its invoice
    was paid in full, so its USD price stands in (never more than the buyer was asked)."""
    if payment.actually_paid_usd is not None and payment.actually_paid_usd > 0:
        return payment.actually_paid_usd
    return payment.price_amount if payment.price_amount else invoice.price_usd


def allocate_share(session: Session, jobs: JobQueue, payment_id: int, *, fee_percent: Decimal,
                   now: datetime) -> Allocation:
    """Record a finished payment's owner share and platform fee, and start its payout.

    Call it inside the transaction that marks the payment finished and completes its invoice;
    it flushes but never commits. It records `owner_share_usd` and `platform_fee_usd` on the
    payment (`split`), then, by the channel's payout strategy:

    * instant: creates a `Payout` for the share (absorbing the channel's carried-over instant
      payouts, if any), links the payment to it, and enqueues its `payout.run` job;
    * threshold: creates an `Accumulation` holding the share for the 5-minute batch timer.

    Idempotent per payment: a second call (a repeated IPN, a retried job) changes nothing and
    returns the first allocation with `created=False`. Raises ValueError for a payment that is
    not `finished`. A channel without a payout wallet gets its payout in `needs_review`, so the
    share is recorded and visible to operators rather than lost.
    """
    payment = session.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        raise ValueError(f"no payment {payment_id}")
    if payment.status != PaymentStatus.FINISHED:
        raise ValueError(f"payment {payment_id} is {payment.status.value}, not finished")
    invoice = session.get(Invoice, payment.invoice_id)
    channel_id = invoice.channel_id
    # One allocation at a time per channel: merging carried-over payouts and reading the held
    # total must see every earlier share of the channel.
    session.execute(text("SELECT pg_advisory_xact_lock(:ns, :id)"), {"ns": CHANNEL_LOCK, "id": channel_id})
    channel = session.get(Channel, channel_id)
    if payment.owner_share_usd is not None:
        return _existing(session, payment, channel, invoice)

    arrived = arrived_usd(payment, invoice)
    share, fee = split(arrived, fee_percent)
    payment.owner_share_usd, payment.platform_fee_usd = share, fee
    if channel.payout_strategy == PayoutStrategy.THRESHOLD:
        accumulation = Accumulation(channel_id=channel_id, payment_id=payment.id, amount_usd=share, created_at=now)
        session.add(accumulation)
        session.flush()
        held = held_total(session, channel_id)
        logger.info("payment %s: share %s USD held for channel %s (held %s of %s)", payment.id, share,
                    channel_id, held, channel.payout_threshold_usd)
        return Allocation(payment.id, channel_id, arrived, share, fee, channel.payout_strategy, None,
                          accumulation.id, held, channel.payout_threshold_usd, True)

    payout = Payout(channel_id=channel_id, kind=PayoutKind.INSTANT, amount_usd=share, funding_asset="ETH",
                    to_currency=channel.payout_currency or "", to_network=channel.payout_network or "",
                    to_address=channel.payout_address or "", created_at=now, updated_at=now)
    if not channel.payout_address:
        payout.status, payout.resume_status = PayoutStatus.NEEDS_REVIEW, PayoutStatus.PENDING
        payout.last_error = "the channel has no payout wallet"
    session.add(payout)
    session.flush()
    payment.payout_id = payout.id
    absorb_carried_over(session, payout, now)
    session.flush()
    # Delivery before money: a subscription's share starts once its access was delivered
    # (`telepay.services.delivery.mark_delivered` queues it then).
    delivered = invoice.kind != InvoiceKind.SUBSCRIPTION or invoice.access_delivered_at is not None
    if payout.status == PayoutStatus.PENDING and delivered:
        enqueue_payout(session, jobs, payout.id, "start")
    logger.info("payment %s: share %s USD, fee %s USD -> payout %s (%s)", payment.id, share, fee, payout.id,
                payout.status.value, extra={"payout_id": payout.id})
    return Allocation(payment.id, channel_id, arrived, share, fee, channel.payout_strategy, payout.id, None,
                      None, None, True)


def enqueue_payout(session: Session, jobs: JobQueue, payout_id: int, reason: str,
                   run_at: datetime | None = None) -> int | None:
    """Queue a run of the payout; `reason` makes the dedupe key (one job per payout per reason)."""
    return jobs.enqueue(session, PAYOUT_JOB, {"payout_id": payout_id}, dedupe_key=f"{payout_id}:{reason}",
                        run_at=run_at)


def absorb_carried_over(session: Session, payout: Payout, now: datetime) -> Decimal:
    """Move the channel's carried-over payouts of the same kind into `payout`; the amount added."""
    carried = list(session.scalars(
        select(Payout).where(Payout.channel_id == payout.channel_id, Payout.kind == payout.kind,
                             Payout.status == PayoutStatus.CARRIED_OVER, Payout.id != payout.id)
        .with_for_update()))
    added = sum((p.amount_usd for p in carried), Decimal(0))
    if not carried:
        return added
    ids = [p.id for p in carried]
    session.execute(update(Payment).where(Payment.payout_id.in_(ids)).values(payout_id=payout.id)
                    .execution_options(synchronize_session=False))
    session.execute(update(Accumulation).where(Accumulation.payout_id.in_(ids)).values(payout_id=payout.id)
                    .execution_options(synchronize_session=False))
    for old in carried:
        old.status, old.merged_into_id, old.updated_at = PayoutStatus.MERGED, payout.id, now
    payout.amount_usd += added
    logger.info("payout %s absorbs carried-over payouts %s (%s USD)", payout.id, ids, added,
                extra={"payout_id": payout.id})
    return added


def held_total(session: Session, channel_id: int) -> Decimal:
    """The owner's threshold money not yet in a live batch: unbatched shares + carried-over batches."""
    unbatched = session.scalar(select(func.coalesce(func.sum(Accumulation.amount_usd), 0)).where(
        Accumulation.channel_id == channel_id, Accumulation.payout_id.is_(None)))
    carried = session.scalar(select(func.coalesce(func.sum(Payout.amount_usd), 0)).where(
        Payout.channel_id == channel_id, Payout.kind == PayoutKind.BATCH,
        Payout.status == PayoutStatus.CARRIED_OVER))
    return Decimal(unbatched) + Decimal(carried)


def _existing(session: Session, payment: Payment, channel: Channel, invoice: Invoice) -> Allocation:
    accumulation = session.scalar(select(Accumulation).where(Accumulation.payment_id == payment.id))
    arrived = payment.owner_share_usd + payment.platform_fee_usd
    if accumulation is not None:
        return Allocation(payment.id, channel.id, arrived, payment.owner_share_usd, payment.platform_fee_usd,
                          PayoutStrategy.THRESHOLD, payment.payout_id, accumulation.id,
                          held_total(session, channel.id), channel.payout_threshold_usd, False)
    return Allocation(payment.id, channel.id, arrived, payment.owner_share_usd, payment.platform_fee_usd,
                      PayoutStrategy.INSTANT, payment.payout_id, None, None, None, False)
