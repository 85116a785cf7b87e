"""`/status` tells the truth: each fault an operator must see turns it `degraded` or `down`,
with a reason that names what to look at; `down` answers 503."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import create_engine, update

from telepay.api.state import api_state
from telepay.models import Job, JobState, Payment, PaymentStatus, RefusedIpn
from tests.api.conftest import make_app

OPERATOR = {"Authorization": "Bearer test-operator-token"}


def status(app):
    response = app.test_client().get("/status", headers=OPERATOR)
    return response.status_code, response.json


def test_a_quiet_service_with_somewhere_to_send_alerts_is_ok(engine, session_factory):
    code, body = status(make_app(engine, ADMIN_CHAT_IDS="42"))
    assert code == 200
    assert body["status"] == "ok", body["reasons"]
    assert body["checks"]["host_wallet"]["data"] == {"note": "payouts are not configured"}
    assert body["checks"]["database"]["data"]["ping_ms"] >= 0


def test_alerts_with_nowhere_to_go_degrade(engine, session_factory):
    code, body = status(make_app(engine))
    assert code == 200 and body["status"] == "degraded"
    assert any("ADMIN_CHAT_IDS" in reason for reason in body["reasons"])


def test_a_dead_invite_job_and_a_payment_in_review_are_named(engine, session_factory, invoice):
    app = make_app(engine, ADMIN_CHAT_IDS="42")
    services = api_state(app).services
    with session_factory.begin() as session:
        job_id = services.jobs.enqueue(session, "access.invite", {"payment_id": 1}, dedupe_key="t")
        session.add(Payment(provider_payment_id=str(uuid.uuid4().int)[:12], invoice_id=invoice.id,
                            status=PaymentStatus.FINISHED, needs_review="amount differs: 3 USD short"))
    with session_factory.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=JobState.DEAD, last_error="Forbidden"))
    code, body = status(app)
    assert code == 200 and body["status"] == "degraded"
    assert body["checks"]["dead_jobs"]["level"] == "degraded"
    assert "access.invite" in body["checks"]["dead_jobs"]["reason"]
    assert "telepay jobs retry" in body["checks"]["dead_jobs"]["reason"]
    assert body["checks"]["payments_review"]["level"] == "degraded"


def test_a_burst_of_refused_ipns_degrades(engine, session_factory):
    app = make_app(engine, ADMIN_CHAT_IDS="42")
    services = api_state(app).services
    now = services.clock.now()
    with session_factory.begin() as session:
        for n in range(12):
            session.add(RefusedIpn(refused_at=now - timedelta(minutes=n), client_ip="203.0.113.9",
                                   reason="signature", detail="bad signature"))
    code, body = status(app)
    assert body["checks"]["payments_in"]["level"] == "degraded"
    assert "12 IPNs refused" in body["checks"]["payments_in"]["reason"]


def test_a_database_that_does_not_answer_is_down_with_503_within_the_timeout(engine, session_factory):
    import time

    app = make_app(engine, ADMIN_CHAT_IDS="42")
    services = api_state(app).services
    gone = create_engine("postgresql+pg8000://postgres@127.0.0.1:9/none", connect_args={"timeout": 1})
    services.session_factory.configure(bind=gone)
    try:
        started = time.monotonic()
        code, body = status(app)
        assert time.monotonic() - started < 5
    finally:
        services.session_factory.configure(bind=engine)
        gone.dispose()
    assert code == 503 and body["status"] == "down"
    assert body["checks"]["database"]["level"] == "down"


def test_a_payout_failing_past_the_setting_is_named_with_its_command(engine, session_factory, channel):
    from telepay.models import Payout, PayoutKind

    app = make_app(engine, ADMIN_CHAT_IDS="42", PAYOUT_FAILING_ALERT_MINUTES="10")
    services = api_state(app).services
    now = services.clock.now()
    with session_factory.begin() as session:
        young = Payout(channel_id=channel.id, kind=PayoutKind.INSTANT, amount_usd=Decimal("9"), to_currency="eth",
                       to_network="eth", to_address="0x" + "1" * 40, failing_since=now - timedelta(minutes=5),
                       last_error="ChangeNOW 503")
        old = Payout(channel_id=channel.id, kind=PayoutKind.INSTANT, amount_usd=Decimal("9"), to_currency="eth",
                     to_network="eth", to_address="0x" + "2" * 40, failing_since=now - timedelta(minutes=11),
                     last_error="ChangeNOW 503")
        session.add_all([young, old])
    code, body = status(app)
    check = body["checks"]["payouts"]
    assert check["level"] == "degraded" and [p["id"] for p in check["data"]["failing"]] == [old.id]
    assert f"payout(s) {old.id} failing for over 10 min" in check["reason"] and "telepay payouts" in check["reason"]


def test_invoices_nowpayments_would_not_create_point_at_the_api_key(engine, session_factory, channel):
    """A wrong NOWPAYMENTS_API_KEY: every sale's invoice stays `created` (the provider refused it)."""
    from sqlalchemy import select

    from telepay.models import Invoice, InvoiceKind, Tier

    app = make_app(engine, ADMIN_CHAT_IDS="42")
    services = api_state(app).services
    now = services.clock.now()
    with session_factory.begin() as session:
        tier_id = session.scalar(select(Tier.id).where(Tier.channel_id == channel.id))
        for n in range(3):
            session.add(Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                                tier_id=tier_id, buyer_user_id=3000 + n, price_usd=Decimal("15.00"), days=30,
                                created_at=now - timedelta(minutes=5)))
    code, body = status(app)
    assert body["checks"]["payments_in"]["level"] == "degraded"
    assert "NOWPAYMENTS_API_KEY" in body["checks"]["payments_in"]["reason"]
