"""What a subscriber sees of their own subscriptions (/mysubs)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from telepay.models import Channel, Subscription, SubscriptionStatus


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
