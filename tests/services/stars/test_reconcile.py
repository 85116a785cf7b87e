"""Reconciliation against the sandbox Telegram's ledger, read through python-telegram-bot: what
agrees stays quiet; each kind of difference is reported and alerts the operators once."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from telegram import Bot

from telepay.models import Job, StarReconciliation
from telepay.services.messages import ALERT_JOB
from telepay.services.stars.reconcile import StarsReconciler
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from tests.sandbox.conftest import RawBotApi
from tests.sandbox.test_telegram_oracle import pay_answering
from tests.services.stars.test_receipts import Stars


def _alerts(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.kind == ALERT_JOB))


def test_differences_with_telegrams_ledger_are_found_and_alerted_once(session_factory):
    stars = Stars(session_factory)
    with TelegramSandbox(rate_limits=RateLimits.off()) as telegram, RawBotApi(telegram) as api:
        buyer = telegram.create_user("Kim")
        buyer.command("start")
        buyer.stars = 10_000
        paid = {}
        for payload in ("agreed", "only-at-telegram", "refunded-there", "amount-differs"):
            link = api.result("createInvoiceLink", title="Club", description="d", payload=payload,
                              currency="XTR", prices=[{"label": "x", "amount": 100}])
            paid[payload] = pay_answering(telegram, api, buyer, link).charge_id
        api.result("refundStarPayment", user_id=buyer.id, telegram_payment_charge_id=paid["refunded-there"])
        # What our bot recorded (payloads it never issued, so each is kept for review and alerted).
        for charge, amount in ((paid["agreed"], 100), (paid["refunded-there"], 100),
                               (paid["amount-differs"], 7), ("stxonly-here", 100)):
            stars.paid("not-ours", amount, charge_id=charge, user=buyer.id)
        reviews = _alerts(session_factory)
        reconciler = StarsReconciler(session_factory, stars.jobs, stars.clock)

        async def run():
            async with Bot(telegram.token, base_url=telegram.base_url) as bot:
                return await reconciler.run(bot)

        found = asyncio.run(run())
        assert asyncio.run(run()) == found  # the same facts a second time...
        assert telegram.errors == []
    assert sorted((d["kind"], d["charge_id"]) for d in found) == sorted([
        ("missing_here", paid["only-at-telegram"]), ("missing_at_telegram", "stxonly-here"),
        ("amount_differs", paid["amount-differs"]), ("refund_not_recorded", paid["refunded-there"])])
    assert _alerts(session_factory) == reviews + 4  # ...alerted once each
    with session_factory() as session:
        runs = list(session.scalars(select(StarReconciliation)))
    assert len(runs) == 2 and runs[0].telegram_count == 5  # four payments and one refund
