"""What a subscriber sees of their own subscriptions (/mysubs); what a refund takes back from one
(`take_back_days`); and the name and key of the job that removes a subscriber whose time ran out
(queued by the expiry sweep, `telepay.services.lifecycle`, or by a refund that ends the term).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from telepay.models import Channel, Invite, InviteStatus, Invoice, InvoiceKind, Subscription, SubscriptionStatus
from telepay.services.jobs import JobQueue

logger = logging.getLogger(__name__)

EXPIRE_JOB = "subscription.expire"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def micros(moment: datetime) -> int:
    """A timestamp as whole microseconds since the epoch, exactly (no float rounding)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def active_subscriptions(session: Session, user_id: int,
                         at: datetime) -> list[tuple[datetime, str, str, int, str | None, bool]]:
    """The user's running subscriptions, soonest end first: (expires at, closed channel's title,
    channel key, subscription id, Star charge id, whether Stars renew it)."""
    rows = session.execute(
        select(Subscription.expires_at, Channel.closed_title, Channel.key, Subscription.id,
               Subscription.star_charge_id, Subscription.star_renews)
        .join(Channel, Channel.id == Subscription.channel_id)
        .where(Subscription.user_id == user_id, Subscription.status == SubscriptionStatus.ACTIVE,
               Subscription.expires_at > at)
        .order_by(Subscription.expires_at)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def take_back_days(session: Session, jobs: JobQueue, invoice: Invoice, now: datetime) -> Subscription | None:
    """Undo what a refunded subscription invoice added: its days come off the buyer's expiry (what
    is left of other purchases stays). If that ends the term, it ends now: the subscription is
    expired and its removal queued exactly as the expiry sweep does (`subscription.expire`: ban
    then unban, leaving an owner's own ban alone), and its undelivered invites leave the delivery
    queue. Call it once per refund; it never commits."""
    if invoice.kind != InvoiceKind.SUBSCRIPTION or not invoice.days:
        return None
    subscription = session.scalars(select(Subscription).where(
        Subscription.channel_id == invoice.channel_id, Subscription.user_id == invoice.buyer_user_id)
        .with_for_update()).one_or_none()
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        return subscription  # its time has run out and its removal is queued already
    subscription.expires_at = max(now, subscription.expires_at - timedelta(days=invoice.days))
    subscription.updated_at = now
    if subscription.expires_at <= now:
        subscription.status = SubscriptionStatus.EXPIRED
        # Nobody waits in the delivery queue for access that has ended.
        session.execute(update(Invite).where(
            Invite.subscription_id == subscription.id,
            Invite.status.in_((InviteStatus.CREATED, InviteStatus.WAITING, InviteStatus.REVIEW)))
            .values(status=InviteStatus.REVOKED, updated_at=now))
        expires_us = micros(subscription.expires_at)
        jobs.enqueue(session, EXPIRE_JOB, {"subscription_id": subscription.id, "expires_at_us": expires_us},
                     dedupe_key=f"expire:{subscription.id}:{expires_us}")
    logger.info("invoice %s: %s days taken back; subscription %s %s at %s", invoice.id, invoice.days,
                subscription.id, subscription.status.value, subscription.expires_at.isoformat())
    return subscription
