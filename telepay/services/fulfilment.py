"""What a completed invoice grants, decided inside the payment's transaction.

A subscription is created or extended (new expiry = the later of now and the current expiry, plus
the tier's days); a donation is thanked. (A refund takes the days back:
`subscriptions.take_back_days`.) The owner's share is allocated (`allocate_share`: an instant
payout or a held share), or, for a Stars payment, left held for Telegram's withdrawal hold
(`HeldShare`; released later by the Stars hold timer), and the owner is told if they opted in.
Everything that talks to Telegram is queued as a job with a dedupe key naming the invoice, so a
repeated IPN or a retried job grants, thanks and notifies exactly once. A subscriber's invite row
is made here, with the grant; its link is the invite job's to make.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from telepay.models import (
    Channel, Invite, InviteStatus, Invoice, InvoiceKind, Payment, Subscription, SubscriptionStatus, Tier,
)
from telepay.services.jobs import JobQueue
from telepay.services.messages import queue_message
from telepay.services.notifications import request_owner_notification
from telepay.services.payments import texts
from telepay.services.payouts import Allocation, allocate_share

logger = logging.getLogger(__name__)

INVITE_JOB = "invite.send"


def extend_subscription(session: Session, invoice: Invoice, now: datetime) -> tuple[Subscription, bool]:
    """Create the buyer's subscription or extend it; (subscription, whether it existed)."""
    # Two invoices of one buyer may complete at once: the insert-or-nothing plus the row lock
    # make the second wait for the first and then extend what it wrote.
    created = session.execute(
        insert(Subscription).values(channel_id=invoice.channel_id, user_id=invoice.buyer_user_id,
                                    status=SubscriptionStatus.ACTIVE, started_at=now,
                                    expires_at=now + timedelta(days=invoice.days),
                                    last_invoice_id=invoice.id, updated_at=now)
        .on_conflict_do_nothing(constraint="uq_subscriptions_channel_id_user_id")
        .returning(Subscription.id)).scalar_one_or_none()
    subscription = session.scalars(
        select(Subscription).where(Subscription.channel_id == invoice.channel_id,
                                   Subscription.user_id == invoice.buyer_user_id)
        .with_for_update().execution_options(populate_existing=True)).one()
    if created is not None:
        return subscription, False
    renewed = subscription.status == SubscriptionStatus.ACTIVE and subscription.expires_at > now
    if not renewed:
        subscription.started_at = now  # a lapsed subscription starts afresh
    subscription.expires_at = max(now, subscription.expires_at) + timedelta(days=invoice.days)
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.last_invoice_id = invoice.id
    subscription.updated_at = now
    return subscription, renewed


def link_name(invoice_id: str | None, user_id: int) -> str:
    """Telegram allows 32 characters: the invoice id without dashes is exactly that."""
    return (invoice_id or f"user{user_id}").replace("-", "")[:32]


def new_invite(session: Session, subscription: Subscription, invoice_id: str | None, now: datetime) -> Invite:
    """The row of a buyer's invite, before any link exists (`telepay.services.access` makes it)."""
    channel = session.get(Channel, subscription.channel_id)
    invite = Invite(subscription_id=subscription.id, invoice_id=invoice_id, chat_id=channel.closed_chat_id,
                    user_id=subscription.user_id, name=link_name(invoice_id, subscription.user_id),
                    status=InviteStatus.CREATED, created_at=now, updated_at=now)
    session.add(invite)
    return invite


@dataclass(frozen=True)
class HeldShare:
    """A share not allocated at fulfilment: a Stars payment's, held until `until`."""

    until: datetime
    share_usd: Decimal
    paid: str  # what the buyer paid, in words ("⭐ 385 Stars")


class Fulfilment:
    """Grants what a completed invoice bought; runs in the caller's transaction, never commits."""

    def __init__(self, jobs: JobQueue, *, fee_percent: Decimal):
        self.jobs = jobs
        self.fee_percent = fee_percent

    def fulfil(self, session: Session, invoice: Invoice, payment: Payment, now: datetime, *,
               held: HeldShare | None = None) -> Allocation | None:
        """Grant, thank, allocate (or hold: `held`) and notify; the allocation, None if held."""
        channel = session.get(Channel, invoice.channel_id)
        allocation = None
        if held is None:
            allocation = allocate_share(session, self.jobs, payment.id, fee_percent=self.fee_percent, now=now)
        arrived = allocation.arrived_usd if allocation else payment.actually_paid_usd
        tier_text = None
        if invoice.kind == InvoiceKind.SUBSCRIPTION:
            subscription, renewed = extend_subscription(session, invoice, now)
            # The invite's row is made with the grant, so the invite job's own first step only reads
            # (no commit to wait for before Telegram is asked for the link).
            new_invite(session, subscription, invoice.id, now)
            self.jobs.enqueue(session, INVITE_JOB, {"invoice_id": invoice.id}, dedupe_key=invoice.id)
            tier = session.get(Tier, invoice.tier_id)
            tier_text = f"Tier {tier.number} · {invoice.days} days" if tier else f"{invoice.days} days"
            logger.info("invoice %s (payment %s): subscription %s %s until %s", invoice.id, payment.id,
                        subscription.id, "extended" if renewed else "started", subscription.expires_at.isoformat())
        else:
            thanks = (texts.thanks(channel.open_title, arrived) if held is None
                      else texts.thanks_in(channel.open_title, held.paid))
            queue_message(session, self.jobs, invoice.buyer_user_id, thanks,
                          dedupe_key=f"buyer:{payment.provider_payment_id}:thanks")
            logger.info("invoice %s (payment %s): donation of %s USD", invoice.id, payment.id, arrived)
        if channel.notify_enabled and not channel.owner_blocked_bot:
            title = channel.closed_title if tier_text else channel.open_title
            buyer = texts.buyer_name(invoice.buyer_username, invoice.buyer_user_id)
            if held is None:
                text = texts.owner_sale(title=title, tier=tier_text, buyer=buyer, at=now, allocation=allocation)
            else:
                text = texts.owner_sale_held(title=title, tier=tier_text, buyer=buyer, at=now, paid=held.paid,
                                             value_usd=arrived, share_usd=held.share_usd, until=held.until)
            request_owner_notification(session, self.jobs, channel.id, text, idempotency_key=f"sale:{invoice.id}")
        return allocation
