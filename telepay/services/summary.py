"""An owner's 30-day summary of a channel: sales, money in, the owner's share, payouts, subscribers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from telepay.models import (
    Accumulation, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus, Payout, PayoutStatus,
    Subscription, SubscriptionStatus,
)

WINDOW = timedelta(days=30)
ZERO = Decimal("0")
_OPEN_PAYOUTS = [s for s in PayoutStatus if s not in (PayoutStatus.FINISHED, PayoutStatus.CANCELLED)]


@dataclass(frozen=True)
class Summary:
    subscriptions_sold: int
    donations: int
    gross_usd: Decimal
    net_usd: Decimal
    payouts_sent_usd: Decimal
    payouts_pending_usd: Decimal
    active_subscribers: int


def channel_summary(session: Session, channel_id: int, now: datetime) -> Summary:
    since = now - WINDOW
    sales = dict(session.execute(
        select(Invoice.kind, func.count()).where(
            Invoice.channel_id == channel_id, Invoice.status == InvoiceStatus.COMPLETED,
            Invoice.completed_at >= since).group_by(Invoice.kind)).all())
    gross, net = session.execute(
        select(func.coalesce(func.sum(func.coalesce(Payment.actually_paid_usd, Payment.price_amount)), ZERO),
               func.coalesce(func.sum(Payment.owner_share_usd), ZERO))
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Invoice.channel_id == channel_id, Payment.status == PaymentStatus.FINISHED,
               Payment.updated_at >= since)).one()
    sent = session.scalar(select(func.coalesce(func.sum(Payout.amount_usd), ZERO)).where(
        Payout.channel_id == channel_id, Payout.status == PayoutStatus.FINISHED, Payout.finished_at >= since))
    in_flight = session.scalar(select(func.coalesce(func.sum(Payout.amount_usd), ZERO)).where(
        Payout.channel_id == channel_id, Payout.status.in_(_OPEN_PAYOUTS)))
    held = session.scalar(select(func.coalesce(func.sum(Accumulation.amount_usd), ZERO)).where(
        Accumulation.channel_id == channel_id, Accumulation.payout_id.is_(None)))
    active = session.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.channel_id == channel_id, Subscription.status == SubscriptionStatus.ACTIVE,
        Subscription.expires_at > now))
    return Summary(
        subscriptions_sold=sales.get(InvoiceKind.SUBSCRIPTION, 0), donations=sales.get(InvoiceKind.DONATION, 0),
        gross_usd=gross, net_usd=net, payouts_sent_usd=sent, payouts_pending_usd=in_flight + held,
        active_subscribers=active,
    )


def render_summary(title: str, summary: Summary) -> str:
    def usd(value: Decimal) -> str:
        return f"${value.quantize(Decimal('0.01')):,.2f}"

    return (
        f"📊 {title} — last 30 days\n\n"
        f"Sales: {summary.subscriptions_sold} subscriptions, {summary.donations} donations\n"
        f"Gross: {usd(summary.gross_usd)}\n"
        f"Your share (after fees): {usd(summary.net_usd)}\n"
        f"Payouts sent: {usd(summary.payouts_sent_usd)}\n"
        f"Payouts pending: {usd(summary.payouts_pending_usd)}\n"
        f"Active subscribers: {summary.active_subscribers}"
    )
