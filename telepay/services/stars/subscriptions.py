"""Star subscriptions as /mysubs shows them, and the buyer's Cancel / Resume of their renewal."""

from __future__ import annotations

from sqlalchemy.orm import Session

from telepay.errors import NotFound
from telepay.models import Subscription, SubscriptionStatus

NOT_RENEWING = "This subscription doesn't renew in Stars (or isn't yours)."


def set_renewal(session: Session, subscription_id: int, user_id: int, renews: bool | None) -> str:
    """The charge id Telegram knows the Star subscription by; with `renews`, record the choice.

    Called twice around editUserStarSubscription: first to check (renews=None), then, once
    Telegram has agreed, to record what it now does."""
    subscription = session.get(Subscription, subscription_id, with_for_update=renews is not None)
    if (subscription is None or subscription.user_id != user_id or subscription.star_charge_id is None
            or subscription.status != SubscriptionStatus.ACTIVE):
        raise NotFound(NOT_RENEWING)
    if renews is not None:
        subscription.star_renews = renews
    return subscription.star_charge_id
