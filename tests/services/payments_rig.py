"""Helpers for the payment tests: invoices, IPNs recorded as the webhook records them, and counts."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import func, select

from telepay.api.schemas import IpnIn
from telepay.models import Invoice, InvoiceKind, InvoiceStatus, Job, Tier
from telepay.services.ipn import record_ipn

BUYER = 555


def _invoice(session_factory, channel, kind=InvoiceKind.SUBSCRIPTION, price="10.00", now=None) -> str:
    with session_factory.begin() as session:
        tier = session.scalars(select(Tier).where(Tier.channel_id == channel.id)).one()
        invoice = Invoice(id=str(uuid.uuid4()), kind=kind, channel_id=channel.id,
                          tier_id=tier.id if kind == InvoiceKind.SUBSCRIPTION else None, buyer_user_id=BUYER,
                          buyer_username="bob", price_usd=Decimal(price),
                          days=30 if kind == InvoiceKind.SUBSCRIPTION else None, status=InvoiceStatus.PENDING,
                          created_at=now or datetime.now(timezone.utc))
        session.add(invoice)
    return invoice.id


def _ipn(session_factory, clock, invoice_id, payment_id, status, *, paid="0.004", pay="0.004",
         parent=None) -> str:
    body = {"payment_id": payment_id, "parent_payment_id": parent, "payment_status": status,
            "order_id": invoice_id, "price_amount": Decimal("10.00"), "price_currency": "usd",
            "pay_amount": Decimal(pay), "actually_paid": Decimal(paid if status != "waiting" else "0"),
            "actually_paid_at_fiat": Decimal(paid) * 2500, "pay_currency": "eth"}
    with session_factory.begin() as session:
        return record_ipn(session, IpnIn.model_validate(body), body, str(body), clock.now())


def _jobs(session_factory, kind):
    with session_factory() as session:
        return list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def _count(session_factory, model):
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))
