"""Refunds of Stars payments: an operator's (`refund`), and the `stars.refund` job that refunds a
purchase we could not deliver (the delivery queue's deadline, `telepay.services.delivery`).
Either way, Telegram first, then our records.

Telegram is asked before anything is written: `refundStarPayment` refuses a second refund of a
charge (CHARGE_ALREADY_REFUNDED), so a rerun after a crash between the two steps simply records
what Telegram already did. A Star subscription the charge belongs to stops renewing too. The
`refunded_payment` update Telegram then sends applies the same (idempotent) `apply_refund`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telegram.error import BadRequest, TelegramError

from telepay.errors import TelePayError
from telepay.models import StarPayment, StarPaymentStatus, Subscription
from telepay.services.jobs import ClaimedJob, JobKind, JobQueue
from telepay.services.stars.holds import RefundResult, apply_refund

logger = logging.getLogger(__name__)


class RefundRefused(TelePayError):
    code = "refund_refused"
    status = 409


def _find(session: Session, ref: str) -> tuple[StarPayment, Subscription | None]:
    query = select(StarPayment).where(StarPayment.id == int(ref)) if ref.isdigit() else \
        select(StarPayment).where(StarPayment.charge_id == ref)
    row = session.scalars(query).one_or_none()
    if row is None:
        raise RefundRefused(f"no Stars payment {ref} (crypto payments are settled through NOWPayments' review)")
    renewing = None
    if row.is_recurring or row.subscription_expires_at is not None:
        renewing = session.scalars(select(Subscription).where(
            Subscription.user_id == row.user_id, Subscription.star_renews.is_(True),
            Subscription.star_charge_id.is_not(None))).first()
    return row, renewing


async def refund(session_factory: sessionmaker[Session], jobs: JobQueue, bot, ref: str, now: datetime) -> RefundResult:
    def find():
        with session_factory() as session:
            return _find(session, ref)

    row, renewing = await asyncio.to_thread(find)
    if row.status == StarPaymentStatus.REFUNDED:
        raise RefundRefused(f"Stars payment {row.id} was refunded at {row.refunded_at:%Y-%m-%d %H:%M} UTC")
    async with bot:
        try:
            await bot.refund_star_payment(row.user_id, row.charge_id)
        except BadRequest as error:
            if "charge_already_refunded" not in error.message.lower():  # PTB rewrites the case
                raise RefundRefused(f"Telegram refused the refund: {error.message}") from None
            logger.info("star payment %s: Telegram had refunded it already; recording it", row.id)
        if renewing is not None:
            try:
                await bot.edit_user_star_subscription(row.user_id, renewing.star_charge_id, is_canceled=True)
            except TelegramError as error:  # the refund stands; the renewal is the operator's to stop
                logger.warning("star payment %s: could not stop the subscription's renewal: %s", row.id, error)

    def record() -> RefundResult:
        with session_factory.begin() as session:
            return apply_refund(session, jobs, row.charge_id, now)

    return await asyncio.to_thread(record)


REFUND_JOB = "stars.refund"


def queue_refund(session: Session, jobs: JobQueue, row: StarPayment, reason: str) -> int | None:
    """Queue Telegram's refund of a fulfilled Stars payment, once per payment."""
    return jobs.enqueue(session, REFUND_JOB, {"charge_id": row.charge_id, "user_id": row.user_id, "reason": reason},
                        dedupe_key=f"refund:{row.id}")


class StarsRefunder:
    """The `stars.refund` job: refundStarPayment, then `apply_refund` (idempotent both)."""

    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock, bot):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock
        self.bot = bot

    async def __call__(self, job: ClaimedJob) -> None:
        charge_id, user_id = job.payload["charge_id"], job.payload["user_id"]
        try:
            await self.bot.refund_star_payment(user_id, charge_id)
        except BadRequest as error:
            if "charge_already_refunded" not in error.message.lower():  # PTB rewrites the case
                raise  # retried, then dead and visible to operators
        logger.info("stars charge %s refunded (%s)", charge_id, job.payload.get("reason"))

        def record() -> RefundResult:
            with self.session_factory.begin() as session:
                return apply_refund(session, self.jobs, charge_id, self.clock.now())

        await asyncio.to_thread(record)


def _refunder(services, bot) -> StarsRefunder:
    return StarsRefunder(services.session_factory, services.jobs, services.clock, bot)


JOB_KINDS = (JobKind(REFUND_JOB, _refunder),)
