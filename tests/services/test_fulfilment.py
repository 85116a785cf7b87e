"""Subscriptions from completed invoices: created, extended from their end while active, and
started afresh from now once lapsed; invite names fit Telegram's 32 characters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from telepay.models import Invoice, Subscription, SubscriptionStatus
from telepay.services.access import link_name
from telepay.services.fulfilment import extend_subscription
from tests.services.payments_rig import _invoice

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def _extend(session_factory, invoice_id, now):
    with session_factory.begin() as session:
        subscription, renewed = extend_subscription(session, session.get(Invoice, invoice_id), now)
        return subscription.expires_at, subscription.started_at, renewed


def test_new_active_and_lapsed_subscriptions(session_factory, channel):  # noqa: F811
    first, second, third = (_invoice(session_factory, channel) for _ in range(3))
    assert _extend(session_factory, first, NOW) == (NOW + timedelta(days=30), NOW, False)
    # Ten days later, still active: 30 more days from the current end, not from now.
    assert _extend(session_factory, second, NOW + timedelta(days=10)) == (NOW + timedelta(days=60), NOW, True)
    with session_factory.begin() as session:
        session.scalars(select(Subscription)).one().status = SubscriptionStatus.EXPIRED
    later = NOW + timedelta(days=100)
    assert _extend(session_factory, third, later) == (later + timedelta(days=30), later, False)
    with session_factory() as session:
        subscription = session.scalars(select(Subscription)).one()
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.last_invoice_id == third


def test_invite_links_are_named_after_the_invoice_within_telegrams_limit():
    name = link_name("0b8e3f9c-1d2e-4f5a-9b6c-7d8e9f0a1b2c", 42)
    assert name == "0b8e3f9c1d2e4f5a9b6c7d8e9f0a1b2c" and len(name) == 32
    assert link_name(None, 42) == "user42"
