"""Fixtures for the webhook API: the real app factory over the real database."""

from __future__ import annotations

import json
import re
import time
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from telepay.api.app import close_app, create_app
from telepay.clock import ManualClock
from telepay.config_load import load_settings
from telepay.models import Base, Channel, Invoice, InvoiceKind, Tier
from telepay.runtime import build_services
from telepay.security import nowpayments, signing

SIGNING_SECRET = "test-webhook-secret"
IPN_SECRET = "test-ipn-secret"
NOWPAYMENTS_IP = "51.89.194.21"

BASE_ENV = {
    "WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
    "NOWPAYMENTS_IPN_SECRET": IPN_SECRET,
    "NOWPAYMENTS_API_KEY": "test-nowpayments-key",
    "PUBLIC_BASE_URL": "https://pay.example.test",
    "OPERATOR_TOKEN": "test-operator-token",
    "RATE_LIMIT_PER_MINUTE": "600",
    "RATE_LIMIT_BURST": "1000",
}


_apps = []


def make_app(engine, **env):
    settings = load_settings({**BASE_ENV, **env}, env_file=None)
    services = build_services(settings, engine=engine, clock=ManualClock())
    app = create_app(settings, services)
    app.testing = True
    _apps.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_apps():
    """Each app keeps its IPN recorder's connections checked out; hand them back after a test."""
    yield
    while _apps:
        close_app(_apps.pop())


@pytest.fixture
def app(engine, session_factory):
    return make_app(engine)


@pytest.fixture
def client(app):
    return app.test_client()


def signed_headers(body: bytes, secret: str = SIGNING_SECRET, timestamp: int | None = None, *,
                   method: str = "POST", path: str = "/webhooks/notification") -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    signature = signing.sign(secret, body, ts, method=method, path=path)
    return {signing.TIMESTAMP_HEADER: str(ts), signing.SIGNATURE_HEADER: signature,
            "Content-Type": "application/json"}


def post_signed(client, path, payload, *, secret=SIGNING_SECRET, timestamp=None, headers=None, **kwargs):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = {**signed_headers(body, secret, timestamp, path=path), **(headers or {})}
    return client.post(path, data=body, headers=all_headers, **kwargs)


def ipn_body(order_id: str, payment_id=5077125051, status="finished", **extra) -> bytes:
    """An IPN as NOWPayments sends it: raw JSON numbers, non-ASCII text."""
    fields = {
        "payment_id": payment_id, "parent_payment_id": None, "invoice_id": 4522625843,
        "payment_status": status, "pay_address": "0x9b0d3b1d6b4c1d6e0d3d9f6c3e1e9b9e5f0b2a11",
        "price_amount": Decimal("15.0"), "price_currency": "usd", "pay_amount": Decimal("0.00612"),
        "actually_paid": Decimal("0.00612"), "actually_paid_at_fiat": Decimal("15.0"), "pay_currency": "eth",
        "order_id": order_id, "order_description": "Подписка ✓", "purchase_id": "6084744717",
        "outcome_amount": Decimal("0.0059"), "outcome_currency": "eth",
        "fee": {"currency": "eth", "depositFee": 0, "withdrawalFee": 0, "serviceFee": Decimal("0.00005")},
    }
    fields.update(extra)
    return raw_json(fields)


def raw_json(fields: dict) -> bytes:
    """json.dumps, but Decimals are written as JSON numbers with their exact text (`15.0`, `0.00005`)."""
    text = json.dumps(fields, ensure_ascii=False, default=lambda d: f"@@NUM{d}@@")
    return re.sub(r'"@@NUM(.*?)@@"', r"\1", text).encode()


def post_ipn(client, body: bytes, *, secret=IPN_SECRET, ip=NOWPAYMENTS_IP, headers=None):
    all_headers = {"Content-Type": "application/json",
                   nowpayments.SIGNATURE_HEADER: nowpayments.nowpayments_signature(secret, body), **(headers or {})}
    return client.post("/webhooks/nowpayments", data=body, headers=all_headers, environ_base={"REMOTE_ADDR": ip})


@pytest.fixture
def channel(session_factory):
    with session_factory.begin() as session:
        channel = Channel(key="k" + uuid.uuid4().hex[:8], owner_user_id=1001, open_chat_id=-1001,
                          closed_chat_id=-1002, open_title="Open", closed_title="Closed")
        channel.tiers.append(Tier(number=1, price_usd=Decimal("15.00"), days=30))
        session.add(channel)
    return channel


@pytest.fixture
def invoice(session_factory, channel):
    with session_factory.begin() as session:
        tier_id = session.scalar(select(Tier.id).where(Tier.channel_id == channel.id))
        invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                          tier_id=tier_id, buyer_user_id=2002, price_usd=Decimal("15.00"), days=30)
        session.add(invoice)
    return invoice


def snapshot(engine) -> dict[str, int]:
    """Row counts of every table but `refused_ipns`: 'the database is unchanged' made checkable.
    (A refused IPN is recorded there on purpose; `refusals` reads it.)"""
    with engine.connect() as connection:
        return {t.name: connection.execute(select(func.count()).select_from(t)).scalar()
                for t in Base.metadata.sorted_tables if t.name != "refused_ipns"}


def refusals(engine) -> list[tuple[str, str]]:
    """(reason, client address) of every refused IPN recorded, oldest first."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            text("SELECT reason, client_ip FROM refused_ipns ORDER BY id"))]
