"""A Stars purchase the delivery queue could not deliver within its deadline is refunded by
Telegram automatically (the `stars.refund` job), and our records follow: share cancelled,
access ended, payment refunded; a rerun of the job changes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from telegram import Bot

from telepay.models import Invite, InviteStatus, ShareStatus, StarPayment, StarPaymentStatus, Subscription
from telepay.services.delivery import DELIVERY_DEADLINE, review_overdue
from telepay.services.stars.refunds import REFUND_JOB, StarsRefunder
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from tests.sandbox.conftest import RawBotApi
from tests.sandbox.test_telegram_oracle import pay_answering
from tests.services.stars.test_receipts import Stars


def test_an_undelivered_stars_purchase_is_refunded_automatically(session_factory):
    stars = Stars(session_factory)
    stars.channel()
    with TelegramSandbox(rate_limits=RateLimits.off()) as telegram, RawBotApi(telegram) as api:
        buyer = telegram.create_user("Lou")
        buyer.command("start")
        buyer.stars = 1000
        invoice = stars.checkout.open_tier(buyer.id, "lou", "chan01key", 1, subscription=False)
        link = api.result("createInvoiceLink", title=invoice.title, description=invoice.description,
                          payload=invoice.payload, currency="XTR",
                          prices=[{"label": invoice.label, "amount": invoice.stars}])
        charge = pay_answering(telegram, api, buyer, link).charge_id
        receipt, _ = stars.paid(invoice, charge_id=charge, user=buyer.id)
        with session_factory.begin() as session:
            subscription = session.scalars(select(Subscription)).one()
            session.add(Invite(subscription_id=subscription.id, invoice_id=invoice.payload, chat_id=-1002,
                               user_id=buyer.id, name="x", status=InviteStatus.WAITING,
                               waiting_since=stars.clock.now()))
        with session_factory.begin() as session:
            assert review_overdue(session, stars.jobs, stars.clock.now() + DELIVERY_DEADLINE - timedelta(1)) == 0
        with session_factory.begin() as session:
            assert review_overdue(session, stars.jobs, stars.clock.now() + DELIVERY_DEADLINE) == 1

        async def run_refund_jobs():
            async with Bot(telegram.token, base_url=telegram.base_url) as bot:
                refunder = StarsRefunder(session_factory, stars.jobs, stars.clock, bot)
                claimed = stars.jobs.claim("test", limit=5, kinds=[REFUND_JOB])
                for job in claimed:
                    await refunder(job)
                    await refunder(job)  # a retried job: Telegram says already refunded; nothing more
                return len(claimed)

        assert asyncio.run(run_refund_jobs()) == 1
        assert buyer.stars == 1000 and telegram.bot_star_balance == 0
        assert telegram.errors == []
    row = stars.row(receipt.star_payment_id)
    assert (row.status, row.share_status) == (StarPaymentStatus.REFUNDED, ShareStatus.CANCELLED)
    with session_factory() as session:
        assert session.scalars(select(Subscription)).one().expires_at <= stars.clock.now()
        assert session.scalars(select(StarPayment)).one().refunded_at is not None
