"""Recording NOWPayments IPNs: store the event, upsert the payment, queue its processing.

This is all the webhook does, in one transaction; moving money state is the processing job's
work. A repeat of a (payment, status) pair adds nothing: IPNs come twice, late and out of order.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from telepay.errors import Conflict, NotFound
from telepay.models import Invoice, Payment, PaymentEvent
from telepay.services.jobs import JobQueue

logger = logging.getLogger(__name__)

PROCESS_JOB = "payment.process"


def _json_safe(value: Any) -> Any:
    """Decimals as strings, so the stored copy loses no digits (the raw body is kept too)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def record_ipn(session: Session, jobs: JobQueue, ipn, body: dict[str, Any], raw: str, now: datetime) -> str:
    """Returns "accepted" for a new (payment, status), "duplicate" for a repeat."""
    invoice_id = session.execute(select(Invoice.id).where(Invoice.id == ipn.order_id)).scalar_one_or_none()
    if invoice_id is None:
        raise NotFound(f"No order {ipn.order_id!r}.", code="unknown_order")
    known_for = session.execute(
        select(Payment.invoice_id).where(Payment.provider_payment_id == ipn.payment_id)
    ).scalar_one_or_none()
    if known_for is not None and known_for != invoice_id:
        raise Conflict(f"Payment {ipn.payment_id} belongs to another order.", code="payment_order_mismatch")

    status = ipn.payment_status.value
    event_id = session.execute(
        insert(PaymentEvent)
        .values(provider_payment_id=ipn.payment_id, status=status, raw_body=raw,
                body=_json_safe(body), received_at=now)
        .on_conflict_do_nothing(constraint="uq_payment_events_provider_payment_id_status")
        .returning(PaymentEvent.id)
    ).scalar_one_or_none()
    if event_id is None:
        logger.info("IPN repeat: payment %s status %s", ipn.payment_id, status)
        return "duplicate"

    session.execute(
        insert(Payment)
        .values(
            provider_payment_id=ipn.payment_id, invoice_id=invoice_id, parent_payment_id=ipn.parent_payment_id,
            status=ipn.payment_status, pay_currency=ipn.pay_currency, pay_amount=ipn.pay_amount,
            actually_paid=ipn.actually_paid, price_amount=ipn.price_amount,
            outcome_amount=ipn.outcome_amount, outcome_currency=ipn.outcome_currency,
            created_at=now, updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider_payment_id"])
    )
    jobs.enqueue(session, PROCESS_JOB, {"provider_payment_id": ipn.payment_id, "event_id": event_id},
                 dedupe_key=f"{ipn.payment_id}:{status}")
    logger.info("IPN accepted: payment %s status %s order %s", ipn.payment_id, status, invoice_id)
    return "accepted"
